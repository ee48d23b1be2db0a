-- The product list endpoint's transaction (GET /api/v1/catalog/products?limit=50, anonymous):
-- the keyset page catalog.service.product_page_json runs, one row more than the page to tell
-- whether another follows, with the page's JSON built by PostgreSQL.  Public reads run in
-- autocommit (core.web.ReadSessionDep): one statement, no BEGIN or COMMIT.  Variables come
-- from bench_api.py (-D first_product=... page=...).
\set after random(:first_product - 1, :first_product + :products - :page - 2)
\set rows :page + 1
SELECT count(*) AS count_1, max(anon_2.id) FILTER (WHERE anon_2.n <= :page) AS anon_1, CAST(json_agg(json_build_object('id', anon_2.id, 'sku', anon_2.sku, 'name', anon_2.name, 'price', CAST(anon_2.price AS TEXT), 'is_active', anon_2.is_active, 'category_id', anon_2.category_id, 'image_url', anon_2.image_url) ORDER BY anon_2.id) FILTER (WHERE anon_2.n <= :page) AS TEXT) AS anon_3
FROM (SELECT product.id AS id, product.sku AS sku, product.name AS name, product.price AS price, product.is_active AS is_active, product.category_id AS category_id, (SELECT product_image.url
	FROM product_image
	WHERE product_image.product_id = product.id ORDER BY product_image.position
	 LIMIT 1) AS image_url, row_number() OVER (ORDER BY product.id) AS n
	FROM product
	WHERE product.id > :after AND product.is_active = true ORDER BY product.id
	 LIMIT :rows) AS anon_2;

-- The product list endpoint's transaction (GET /api/v1/catalog/products?limit=50, anonymous):
-- the keyset page of catalog.listings.products (sort id, active only), one row more than the
-- page to tell whether another follows.  Public reads run in autocommit
-- (core.web.ReadSessionDep): one statement, no BEGIN or COMMIT.  Variables come from
-- bench_api.py (-D first_product=... page=...).
\set after random(:first_product - 1, :first_product + :products - :page - 2)
\set rows :page + 1
SELECT product.id AS id, product.sku AS sku, product.name AS name, product.price AS price, product.is_active AS is_active, product.category_id AS category_id, (SELECT product_image.url
	FROM product_image
	WHERE product_image.product_id = product.id ORDER BY product_image.position
	 LIMIT 1) AS image_url
FROM product
WHERE product.is_active = true AND product.id > :after ORDER BY product.id ASC
 LIMIT :rows;

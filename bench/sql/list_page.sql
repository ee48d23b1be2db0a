-- The product list endpoint's transaction (GET /api/v1/catalog/products?limit=50, anonymous):
-- the keyset page catalog.service.product_page runs, one row more than the page to tell
-- whether another follows.  Variables come from bench_api.py (-D first_product=... page=...).
\set after random(:first_product - 1, :first_product + :products - :page - 2)
\set rows :page + 1
BEGIN;
SELECT product.id, product.sku, product.name, product.price, product.is_active, product.category_id, (SELECT product_image.url
	FROM product_image
	WHERE product_image.product_id = product.id ORDER BY product_image.position
	 LIMIT 1) AS image_url
	FROM product
	WHERE product.id > :after AND product.is_active = true ORDER BY product.id
	 LIMIT :rows;
COMMIT;

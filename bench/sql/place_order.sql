-- The order placement endpoint's transaction (POST /api/v1/sales/orders, three products, one
-- unit each), statement for statement as the server sends it: the caller's permissions
-- (auth.deps.load_principal), the branch (inventory.service.branch_state), the products'
-- prices, the order row with its amounts (sales.service._claim), one conditional stock update
-- per product in product order, the ledger movements and the order's items.  Prices are
-- literals here (the server sends the values it read); timestamps are the transaction's.
\set customer random(:first_customer, :first_customer + :customers - 1)
\set step :products / 3
\set a random(0, :products - 1)
\set b (:a + random(1, :step)) % :products
\set c (:b + random(1, :step)) % :products
\set p1 :first_product + least(:a, :b, :c)
\set p3 :first_product + greatest(:a, :b, :c)
\set p2 :first_product + :a + :b + :c - least(:a, :b, :c) - greatest(:a, :b, :c)
BEGIN;
SELECT u.email, u.is_active, rp.permission,
       EXISTS (SELECT 1 FROM refresh_token rt
               WHERE rt.family_id = lpad(CAST(:customer AS text), 32, '0') AND rt.user_id = u.id
                 AND rt.revoked_at IS NULL) AS live
FROM "user" u
LEFT JOIN user_role ur ON ur.user_id = u.id
LEFT JOIN role_permission rp ON rp.role_id = ur.role_id
WHERE u.id = :customer;
SELECT branch.is_active
	FROM branch
	WHERE branch.id = :branch;
SELECT product.id, product.sku, product.name, product.price, product.is_active
	FROM product
	WHERE product.id IN (:p1, :p2, :p3) AND product.is_active = true;
INSERT INTO "order" (created_at, updated_at, created_by_id, updated_by_id, customer_id, branch_id, status, subtotal, discount, total, idempotency_key) VALUES (now(), now(), :customer, :customer, :customer, :branch, 'PENDING', 300.00, 0.00, 300.00, NULL) RETURNING "order".id AS order_id \gset
UPDATE stock_entry SET updated_at=now(), updated_by_id=:customer, quantity=(stock_entry.quantity - 1) WHERE stock_entry.branch_id = :branch AND stock_entry.product_id = :p1 AND stock_entry.quantity >= 1;
UPDATE stock_entry SET updated_at=now(), updated_by_id=:customer, quantity=(stock_entry.quantity - 1) WHERE stock_entry.branch_id = :branch AND stock_entry.product_id = :p2 AND stock_entry.quantity >= 1;
UPDATE stock_entry SET updated_at=now(), updated_by_id=:customer, quantity=(stock_entry.quantity - 1) WHERE stock_entry.branch_id = :branch AND stock_entry.product_id = :p3 AND stock_entry.quantity >= 1;
INSERT INTO inventory_movement (branch_id, product_id, quantity_delta, reason, transfer_id, reference, note, created_at, created_by_id) VALUES (:branch, :p1,  -1, 'SALE', NULL, 'order:' || :order_id, '', now(), :customer), (:branch, :p2,  -1, 'SALE', NULL, 'order:' || :order_id, '', now(), :customer), (:branch, :p3,  -1, 'SALE', NULL, 'order:' || :order_id, '', now(), :customer);
INSERT INTO order_item (created_at, updated_at, created_by_id, updated_by_id, order_id, product_id, quantity, unit_price, line_total) VALUES (now(), now(), :customer, :customer, :order_id, :p1, 1, 100.00, 100.00), (now(), now(), :customer, :customer, :order_id, :p2, 1, 100.00, 100.00), (now(), now(), :customer, :customer, :order_id, :p3, 1, 100.00, 100.00);
COMMIT;

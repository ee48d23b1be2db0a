-- Only the writes of a three-product order: the conditional stock updates in product order,
-- the order row, its items and its ledger movements.  A higher floor than place_order.sql,
-- which also has the reads the endpoint makes (caller, branch, prices).
\set customer random(:first_customer, :first_customer + :customers - 1)
\set step :products / 3
\set a random(0, :products - 1)
\set b (:a + random(1, :step)) % :products
\set c (:b + random(1, :step)) % :products
\set p1 :first_product + least(:a, :b, :c)
\set p3 :first_product + greatest(:a, :b, :c)
\set p2 :first_product + :a + :b + :c - least(:a, :b, :c) - greatest(:a, :b, :c)
BEGIN;
UPDATE stock_entry SET updated_at=now(), updated_by_id=:customer, quantity=quantity - 1 WHERE branch_id = :branch AND product_id = :p1 AND quantity >= 1;
UPDATE stock_entry SET updated_at=now(), updated_by_id=:customer, quantity=quantity - 1 WHERE branch_id = :branch AND product_id = :p2 AND quantity >= 1;
UPDATE stock_entry SET updated_at=now(), updated_by_id=:customer, quantity=quantity - 1 WHERE branch_id = :branch AND product_id = :p3 AND quantity >= 1;
INSERT INTO "order" (created_at, updated_at, created_by_id, updated_by_id, customer_id, branch_id, status, subtotal, discount, total) VALUES (now(), now(), :customer, :customer, :customer, :branch, 'PENDING', 300.00, 0.00, 300.00) RETURNING id AS order_id \gset
INSERT INTO order_item (created_at, updated_at, created_by_id, updated_by_id, order_id, product_id, quantity, unit_price, line_total) VALUES (now(), now(), :customer, :customer, :order_id, :p1, 1, 100.00, 100.00), (now(), now(), :customer, :customer, :order_id, :p2, 1, 100.00, 100.00), (now(), now(), :customer, :customer, :order_id, :p3, 1, 100.00, 100.00);
INSERT INTO inventory_movement (branch_id, product_id, quantity_delta, reason, reference, note, created_at, created_by_id) VALUES (:branch, :p1, -1, 'SALE', 'order:' || :order_id, '', now(), :customer), (:branch, :p2, -1, 'SALE', 'order:' || :order_id, '', now(), :customer), (:branch, :p3, -1, 'SALE', 'order:' || :order_id, '', now(), :customer);
COMMIT;

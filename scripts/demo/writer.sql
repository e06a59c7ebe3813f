-- One round of shop traffic for the demo writer: a new order with two
-- lines, an order moving on, a customer profile change, a price change.
BEGIN;
WITH c AS (SELECT 1 + floor(random() * 500)::bigint AS id),
     o AS (INSERT INTO orders (customer_id, status, total, note)
           SELECT id, 'new', 0, 'demo writer' FROM c RETURNING id)
INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price)
SELECT o.id, l, p.id, l, p.price FROM o CROSS JOIN generate_series(1, 2) l
JOIN products p ON p.id = 1 + (o.id * l) % 100;
UPDATE orders SET total = (SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = orders.id)
WHERE id = (SELECT max(id) FROM orders);
UPDATE orders SET status = 'shipped', shipped_at = now()
WHERE id = (SELECT id FROM orders WHERE status = 'paid' ORDER BY random() LIMIT 1);
UPDATE customers SET profile = profile || jsonb_build_object('last_seen', now()::text)
WHERE id = 1 + floor(random() * 500)::bigint;
UPDATE products SET price = price + 0.01 WHERE id = 1 + floor(random() * 100)::int;
COMMIT;

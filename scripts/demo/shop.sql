-- A small but realistic shop schema for the xdb demo.
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');

CREATE TABLE customers (
    id          bigserial PRIMARY KEY,
    public_id   uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    email       text NOT NULL,
    name        text,
    profile     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          serial PRIMARY KEY,
    sku         varchar(32) NOT NULL UNIQUE,
    title       text NOT NULL,
    price       numeric(12,2) NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    description text            -- long enough to be TOASTed
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    status      order_status NOT NULL DEFAULT 'new',
    total       numeric(12,2) NOT NULL DEFAULT 0,
    placed_at   timestamptz NOT NULL DEFAULT now(),
    shipped_at  timestamptz,
    note        text
);

CREATE TABLE order_items (
    order_id    bigint NOT NULL REFERENCES orders(id),
    line_no     int NOT NULL,
    product_id  int NOT NULL REFERENCES products(id),
    quantity    int NOT NULL,
    unit_price  numeric(12,2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

INSERT INTO customers (email, name, profile, created_at)
SELECT 'customer' || g || '@example.com', 'Customer ' || g,
       jsonb_build_object('tier', (ARRAY['bronze','silver','gold'])[1 + g % 3], 'newsletter', g % 2 = 0),
       now() - (g || ' hours')::interval
FROM generate_series(1, 500) g;

INSERT INTO products (sku, title, price, tags, description)
SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, (g * 3.17)::numeric(12,2),
       ARRAY['tag' || (g % 5), 'tag' || (g % 7)],
       repeat('Long product description ' || g || '. ', 600)
FROM generate_series(1, 100) g;

INSERT INTO orders (customer_id, status, total, placed_at, note)
SELECT 1 + g % 500, (ARRAY['new','paid','shipped']::order_status[])[1 + g % 3], 0,
       now() - (g || ' minutes')::interval, CASE WHEN g % 10 = 0 THEN 'gift wrap' END
FROM generate_series(1, 2000) g;

INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price)
SELECT o.id, l, 1 + (o.id * l) % 100, 1 + l % 3, p.price
FROM orders o CROSS JOIN generate_series(1, 3) l JOIN products p ON p.id = 1 + (o.id * l) % 100;

UPDATE orders o SET total = s.sum FROM (
  SELECT order_id, sum(quantity * unit_price) AS sum FROM order_items GROUP BY order_id) s
WHERE s.order_id = o.id;

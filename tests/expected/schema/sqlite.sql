-- xdb schema for plan shop → <target> (SQLite)

-- public.customers → customers
-- note: public.customers.external_id: default `gen_random_uuid()` does not translate to SQLite; the target column has no default
--   id                       bigint                         → INTEGER
--   email                    character varying(320)         → TEXT
--       lossy: length limit 320 is not enforced (SQLite ignores declared lengths)
--   name                     text                           → TEXT
--   bio                      character varying(20000)       → TEXT
--       lossy: length limit 20000 is not enforced (SQLite ignores declared lengths)
--   external_id              uuid                           → TEXT
--   is_active                boolean                        → INTEGER
--   signup_ip                inet                           → TEXT
--   created_at               timestamp with time zone       → TEXT
--       lossy: stored as ISO-8601 text in UTC with a trailing Z
--   birthday                 date                           → TEXT
--   preferences              jsonb                          → TEXT
CREATE TABLE IF NOT EXISTS "customers" (
  "id" INTEGER PRIMARY KEY NOT NULL,
  "email" TEXT NOT NULL,
  "name" TEXT,
  "bio" TEXT,
  "external_id" TEXT NOT NULL,
  "is_active" INTEGER NOT NULL DEFAULT 1,
  "signup_ip" TEXT,
  "created_at" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  "birthday" TEXT,
  "preferences" TEXT DEFAULT '{}'
);
-- built by the copy after the data is loaded:
-- CREATE UNIQUE INDEX IF NOT EXISTS "customers_email_key" ON "customers" ("email");
-- not rebuilt: public.customers: index customers_lower_email_idx is an expression or partial index and was not rebuilt on the target (CREATE INDEX customers_lower_email_idx ON public.customers USING btree (lower((email)::text)))

-- public.products → products
--   id                       integer                        → INTEGER
--   sku                      character varying(64)          → TEXT
--       lossy: length limit 64 is not enforced (SQLite ignores declared lengths)
--   title                    text                           → TEXT
--   price                    money_amount (domain)          → TEXT
--       lossy: domain money_amount is its base type numeric(12,2) here; its CHECK constraints are not created on the target
--   weight_kg                numeric                        → TEXT
--   tags                     text[]                         → TEXT
--   photo                    bytea                          → BLOB
--   attributes               json                           → TEXT
--   updated_at               timestamp(3) without time zone → TEXT
CREATE TABLE IF NOT EXISTS "products" (
  "id" INTEGER PRIMARY KEY NOT NULL,
  "sku" TEXT NOT NULL,
  "title" TEXT NOT NULL,
  "price" TEXT NOT NULL,
  "weight_kg" TEXT,
  "tags" TEXT,
  "photo" BLOB,
  "attributes" TEXT,
  "updated_at" TEXT
);
-- built by the copy after the data is loaded:
-- CREATE UNIQUE INDEX IF NOT EXISTS "products_sku_key" ON "products" ("sku");

-- public.orders → orders
--   id                       bigint                         → INTEGER
--   customer_id              bigint                         → INTEGER
--   status                   order_status                   → TEXT
--   total                    numeric(14,2)                  → TEXT
--   placed_at                timestamp with time zone       → TEXT
--       lossy: stored as ISO-8601 text in UTC with a trailing Z
--   delivery_window          interval                       → TEXT
--   pickup_time              time without time zone         → TEXT
--   note                     text                           → TEXT
CREATE TABLE IF NOT EXISTS "orders" (
  "id" INTEGER PRIMARY KEY NOT NULL,
  "customer_id" INTEGER NOT NULL,
  "status" TEXT NOT NULL DEFAULT 'pending' CHECK ("status" IN ('pending', 'paid', 'shipped', 'cancelled')),
  "total" TEXT NOT NULL DEFAULT 0,
  "placed_at" TEXT NOT NULL,
  "delivery_window" TEXT,
  "pickup_time" TEXT,
  "note" TEXT
);
-- built by the copy after the data is loaded:
-- CREATE INDEX IF NOT EXISTS "orders_customer_placed_idx" ON "orders" ("customer_id", "placed_at");
-- not created: foreign key orders_customer_id_fkey: FOREIGN KEY (customer_id) REFERENCES customers(id)

-- public.order_items → order_items
--   order_id                 bigint                         → INTEGER
--   line_no                  integer                        → INTEGER
--   product_id               integer                        → INTEGER
--   quantity                 smallint                       → INTEGER
--   unit_price               money_amount (domain)          → TEXT
--       lossy: domain money_amount is its base type numeric(12,2) here; its CHECK constraints are not created on the target
CREATE TABLE IF NOT EXISTS "order_items" (
  "order_id" INTEGER NOT NULL,
  "line_no" INTEGER NOT NULL,
  "product_id" INTEGER NOT NULL,
  "quantity" INTEGER NOT NULL DEFAULT 1,
  "unit_price" TEXT NOT NULL,
  PRIMARY KEY ("order_id", "line_no")
);
-- not created: foreign key order_items_order_id_fkey: FOREIGN KEY (order_id) REFERENCES orders(id)
-- not created: foreign key order_items_product_id_fkey: FOREIGN KEY (product_id) REFERENCES products(id)
-- not created: check constraint order_items_quantity_positive: CHECK ((quantity > 0))

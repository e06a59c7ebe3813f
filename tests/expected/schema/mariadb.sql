-- xdb schema for plan shop → <target> (MariaDB <version>)

-- public.customers → customers
-- note: public.customers.external_id: default `gen_random_uuid()` does not translate to MariaDB <version>; the target column has no default
--   id                       bigint                         → BIGINT
--   email                    character varying(320)         → VARCHAR(320)
--   name                     text                           → LONGTEXT
--   bio                      character varying(20000)       → LONGTEXT
--       lossy: length limit 20000 is not enforced (MySQL VARCHAR holds at most 16383 utf8mb4 characters)
--   external_id              uuid                           → CHAR(36) CHARACTER SET ascii COLLATE ascii_bin
--   is_active                boolean                        → TINYINT(1)
--   signup_ip                inet                           → VARCHAR(43)
--   created_at               timestamp with time zone       → DATETIME(6)
--       lossy: stored as UTC (DATETIME has no time zone: read it as UTC); years before 1000 or after 9999 and ±infinity: the copy stops with an error (policy error)
--   birthday                 date                           → DATE
--       lossy: years before 1000 or after 9999 and ±infinity: the copy stops with an error (policy error)
--   preferences              jsonb                          → JSON
CREATE TABLE IF NOT EXISTS `customers` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `email` VARCHAR(320) NOT NULL,
  `name` LONGTEXT NULL,
  `bio` LONGTEXT NULL,
  `external_id` CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `is_active` TINYINT(1) NOT NULL DEFAULT 1,
  `signup_ip` VARCHAR(43) NULL,
  `created_at` DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6),
  `birthday` DATE NULL,
  `preferences` LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL DEFAULT '{}' CHECK (json_valid(`preferences`)),
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
-- built by the copy after the data is loaded:
-- CREATE UNIQUE INDEX IF NOT EXISTS `customers_email_key` ON `customers` (`email`);
-- not rebuilt: public.customers: index customers_lower_email_idx is an expression or partial index and was not rebuilt on the target (CREATE INDEX customers_lower_email_idx ON public.customers USING btree (lower((email)::text)))

-- public.products → products
--   id                       integer                        → INT
--   sku                      character varying(64)          → VARCHAR(64)
--   title                    text                           → LONGTEXT
--   price                    money_amount (domain)          → DECIMAL(12,2)
--       lossy: NaN: the copy stops with an error (policy error)
--       lossy: domain money_amount is its base type numeric(12,2) here; its CHECK constraints are not created on the target
--   weight_kg                numeric                        → DECIMAL(65,30)
--       lossy: holds 35 integer and 30 fraction digits; NaN, ±Infinity and values with more digits: the copy stops with an error (policy error)
--   tags                     text[]                         → JSON
--       lossy: stored as a JSON array (element types and lower bounds other than 1 are not kept)
--   photo                    bytea                          → LONGBLOB
--   attributes               json                           → JSON
--   updated_at               timestamp(3) without time zone → DATETIME(3)
--       lossy: years before 1000 or after 9999 and ±infinity: the copy stops with an error (policy error)
CREATE TABLE IF NOT EXISTS `products` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `sku` VARCHAR(64) NOT NULL,
  `title` LONGTEXT NOT NULL,
  `price` DECIMAL(12,2) NOT NULL,
  `weight_kg` DECIMAL(65,30) NULL,
  `tags` LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL CHECK (json_valid(`tags`)),
  `photo` LONGBLOB NULL,
  `attributes` LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL CHECK (json_valid(`attributes`)),
  `updated_at` DATETIME(3) NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
-- built by the copy after the data is loaded:
-- CREATE UNIQUE INDEX IF NOT EXISTS `products_sku_key` ON `products` (`sku`);

-- public.orders → orders
--   id                       bigint                         → BIGINT
--   customer_id              bigint                         → BIGINT
--   status                   order_status                   → ENUM('pending','paid','shipped','cancelled')
--   total                    numeric(14,2)                  → DECIMAL(14,2)
--       lossy: NaN: the copy stops with an error (policy error)
--   placed_at                timestamp with time zone       → DATETIME(6)
--       lossy: stored as UTC (DATETIME has no time zone: read it as UTC); years before 1000 or after 9999 and ±infinity: the copy stops with an error (policy error)
--   delivery_window          interval                       → VARCHAR(64)
--   pickup_time              time without time zone         → TIME(6)
--   note                     text                           → LONGTEXT
CREATE TABLE IF NOT EXISTS `orders` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `customer_id` BIGINT NOT NULL,
  `status` ENUM('pending','paid','shipped','cancelled') NOT NULL DEFAULT 'pending',
  `total` DECIMAL(14,2) NOT NULL DEFAULT 0,
  `placed_at` DATETIME(6) NOT NULL,
  `delivery_window` VARCHAR(64) NULL,
  `pickup_time` TIME(6) NULL,
  `note` LONGTEXT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
-- built by the copy after the data is loaded:
-- CREATE INDEX IF NOT EXISTS `orders_customer_placed_idx` ON `orders` (`customer_id`, `placed_at`);
-- not created: foreign key orders_customer_id_fkey: FOREIGN KEY (customer_id) REFERENCES customers(id)

-- public.order_items → order_items
--   order_id                 bigint                         → BIGINT
--   line_no                  integer                        → INT
--   product_id               integer                        → INT
--   quantity                 smallint                       → SMALLINT
--   unit_price               money_amount (domain)          → DECIMAL(12,2)
--       lossy: NaN: the copy stops with an error (policy error)
--       lossy: domain money_amount is its base type numeric(12,2) here; its CHECK constraints are not created on the target
CREATE TABLE IF NOT EXISTS `order_items` (
  `order_id` BIGINT NOT NULL,
  `line_no` INT NOT NULL,
  `product_id` INT NOT NULL,
  `quantity` SMALLINT NOT NULL DEFAULT 1,
  `unit_price` DECIMAL(12,2) NOT NULL,
  PRIMARY KEY (`order_id`, `line_no`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
-- not created: foreign key order_items_order_id_fkey: FOREIGN KEY (order_id) REFERENCES orders(id)
-- not created: foreign key order_items_product_id_fkey: FOREIGN KEY (product_id) REFERENCES products(id)
-- not created: check constraint order_items_quantity_positive: CHECK ((quantity > 0))

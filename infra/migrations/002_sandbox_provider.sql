-- Ledger of the sandbox payment provider (stands in for the provider's own servers, so its idempotency
-- keys survive a crashed or restarted payment function, as Stripe's do).
CREATE TABLE IF NOT EXISTS sandbox_charges (
  idempotency_key VARCHAR(64) NOT NULL PRIMARY KEY,
  amount_cents INT UNSIGNED NOT NULL,
  currency CHAR(3) NOT NULL,
  token VARCHAR(200) NOT NULL,
  status VARCHAR(16) NOT NULL,
  provider_ref VARCHAR(64) NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A switch to simulate a provider outage: while `outage` is 1 every charge fails transiently.
CREATE TABLE IF NOT EXISTS sandbox_state (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  outage TINYINT(1) NOT NULL DEFAULT 0
) ENGINE=InnoDB;
INSERT IGNORE INTO sandbox_state (id, outage) VALUES (1, 0);

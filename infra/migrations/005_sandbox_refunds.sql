-- Refunds of the sandbox payment provider, one per booking key (the provider's `refund-<booking key>`
-- idempotency key), so a repeated refund returns the first answer across processes, as Stripe's does.
-- status: succeeded, failed (failure_code says why: charge_not_found, charge_not_refundable, amount_too_large).
CREATE TABLE IF NOT EXISTS sandbox_refunds (
  idempotency_key VARCHAR(64) NOT NULL PRIMARY KEY,
  charge_ref VARCHAR(64) NOT NULL,
  amount_cents INT UNSIGNED NOT NULL,
  status VARCHAR(16) NOT NULL,
  refund_ref VARCHAR(64) NOT NULL,
  failure_code VARCHAR(64) NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Transactional outbox for confirmation emails. The row is written in the same transaction that confirms the
-- booking, so a confirmed booking always has its email queued; sending happens after the batch and a failed
-- send only leaves the row `pending` (with attempts and last_error) for a later run, never touching the
-- booking or its decision.
-- status: pending (to send), sending (claimed by a sender since claimed_at), sent, failed (gave up).
CREATE TABLE IF NOT EXISTS email_outbox (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  booking_id BIGINT UNSIGNED NOT NULL,
  booking_key VARCHAR(64) NOT NULL,
  kind VARCHAR(32) NOT NULL DEFAULT 'booking_confirmed',
  recipient VARCHAR(255) NOT NULL,
  subject VARCHAR(255) NOT NULL,
  body TEXT NOT NULL,
  status VARCHAR(16) NOT NULL DEFAULT 'pending',
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  last_error TEXT NULL,
  message_id VARCHAR(255) NULL,
  claimed_by CHAR(32) NULL,
  claimed_at TIMESTAMP(6) NULL,
  sent_at TIMESTAMP(6) NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_email_outbox_booking (booking_id),
  KEY ix_email_outbox_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

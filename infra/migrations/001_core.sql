-- Core write-side tables. Table and column names are a contract: people and tools query them directly.
-- Extra columns all have defaults, so a hand-written INSERT naming only the documented columns works.

CREATE TABLE IF NOT EXISTS users (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(255) NOT NULL,
  name VARCHAR(255) NOT NULL DEFAULT '',
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS listings (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  host_id BIGINT UNSIGNED NOT NULL,
  title VARCHAR(255) NOT NULL,
  city VARCHAR(100) NOT NULL,
  max_guests INT UNSIGNED NOT NULL DEFAULT 2,
  nightly_price_cents INT UNSIGNED NOT NULL,
  currency CHAR(3) NOT NULL DEFAULT 'EUR',
  active TINYINT(1) NOT NULL DEFAULT 1,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY ix_listings_city (city)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- status: held (dates taken while the payment runs), confirmed, released (payment failed), cancelled.
CREATE TABLE IF NOT EXISTS bookings (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  booking_key VARCHAR(64) NOT NULL,
  user_id BIGINT UNSIGNED NOT NULL,
  listing_id BIGINT UNSIGNED NOT NULL,
  check_in DATE NOT NULL,
  check_out DATE NOT NULL,
  guests INT UNSIGNED NOT NULL DEFAULT 1,
  status VARCHAR(16) NOT NULL DEFAULT 'confirmed',
  amount_cents INT UNSIGNED NOT NULL DEFAULT 0,
  currency CHAR(3) NOT NULL DEFAULT 'EUR',
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_bookings_key (booking_key),
  KEY ix_bookings_listing_dates (listing_id, status, check_in, check_out),
  KEY ix_bookings_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- status: captured, declined.
CREATE TABLE IF NOT EXISTS payments (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  booking_id BIGINT UNSIGNED NOT NULL,
  booking_key VARCHAR(64) NOT NULL,
  user_id BIGINT UNSIGNED NOT NULL,
  amount_cents INT UNSIGNED NOT NULL,
  currency CHAR(3) NOT NULL DEFAULT 'EUR',
  provider VARCHAR(32) NOT NULL DEFAULT 'sandbox',
  provider_ref VARCHAR(128) NULL,
  status VARCHAR(16) NOT NULL DEFAULT 'captured',
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_payments_key (booking_key),
  KEY ix_payments_user (user_id),
  KEY ix_payments_booking (booking_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The final decision per request key, written in the same transaction as the booking change:
-- a redelivered request re-publishes this row and changes nothing else.
CREATE TABLE IF NOT EXISTS decisions (
  booking_key VARCHAR(64) NOT NULL PRIMARY KEY,
  request_hash CHAR(32) NOT NULL,
  status VARCHAR(16) NOT NULL,
  reason VARCHAR(64) NULL,
  booking_id BIGINT UNSIGNED NULL,
  decision_json TEXT NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Booking calls that could not be completed (publish failed, transient payment failure).
-- status: pending, in_flight, succeeded, dead.
CREATE TABLE IF NOT EXISTS booking_retries (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  booking_key VARCHAR(64) NOT NULL,
  request_json TEXT NOT NULL,
  reason VARCHAR(64) NOT NULL,
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  next_attempt_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  status VARCHAR(16) NOT NULL DEFAULT 'pending',
  last_error TEXT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_retries_key (booking_key),
  KEY ix_retries_due (status, next_attempt_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The hash of the request a booking was held for (the one stored with its decision): lets the hold sweep complete
-- or settle a booking whose payment_fn never came back exactly as payment_fn would have.
ALTER TABLE bookings ADD COLUMN request_hash CHAR(32) NULL;
-- The sweeps find what waits too long: held bookings by age, open retry rows by age.
CREATE INDEX ix_bookings_status_updated ON bookings (status, updated_at);
CREATE INDEX ix_retries_status_created ON booking_retries (status, created_at);

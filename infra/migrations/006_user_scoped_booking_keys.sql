-- Booking keys are scoped to their user: "<user id>.<Idempotency-Key>" (up to 20 digits, a dot and 64 characters),
-- and the sandbox's refund key adds "refund-" to one. Every column holding such a key grows to 128.
ALTER TABLE bookings MODIFY booking_key VARCHAR(128) NOT NULL;
ALTER TABLE payments MODIFY booking_key VARCHAR(128) NOT NULL;
ALTER TABLE decisions MODIFY booking_key VARCHAR(128) NOT NULL;
ALTER TABLE booking_retries MODIFY booking_key VARCHAR(128) NOT NULL;
ALTER TABLE email_outbox MODIFY booking_key VARCHAR(128) NOT NULL;
ALTER TABLE sandbox_charges MODIFY idempotency_key VARCHAR(128) NOT NULL;
ALTER TABLE sandbox_refunds MODIFY idempotency_key VARCHAR(128) NOT NULL;

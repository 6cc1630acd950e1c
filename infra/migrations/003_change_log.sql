-- Change capture for the Redis read model: every INSERT/UPDATE/DELETE on the four replicated tables, by the
-- application or typed by hand in a SQL shell, adds a row here in the same transaction. The replicator claims
-- rows with SELECT ... FOR UPDATE SKIP LOCKED, re-reads each entity's current row, writes its Redis form, and
-- deletes exactly the rows it applied (so a slow transaction's lower id is never skipped, and the log prunes
-- itself). The row carries only the key: the current row in MySQL is the truth, whatever the order of changes.
-- DROP TRIGGER IF EXISTS + CREATE TRIGGER (not MariaDB's CREATE OR REPLACE TRIGGER, which MySQL 8 rejects): the
-- same statements run on MySQL 8 / RDS and MariaDB, and re-running the file after a partial failure works.
-- RDS with binary logging needs log_bin_trust_function_creators=1 in its parameter group (README).
CREATE TABLE IF NOT EXISTS change_log (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  entity VARCHAR(16) NOT NULL,
  entity_id BIGINT UNSIGNED NOT NULL,
  op CHAR(1) NOT NULL,
  changed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

DELIMITER $$

DROP TRIGGER IF EXISTS change_log_users_insert$$
CREATE TRIGGER change_log_users_insert AFTER INSERT ON users FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('users', NEW.id, 'I');
END$$

DROP TRIGGER IF EXISTS change_log_users_update$$
CREATE TRIGGER change_log_users_update AFTER UPDATE ON users FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('users', NEW.id, 'U');
  IF OLD.id <> NEW.id THEN
    INSERT INTO change_log (entity, entity_id, op) VALUES ('users', OLD.id, 'D');
  END IF;
END$$

DROP TRIGGER IF EXISTS change_log_users_delete$$
CREATE TRIGGER change_log_users_delete AFTER DELETE ON users FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('users', OLD.id, 'D');
END$$

DROP TRIGGER IF EXISTS change_log_listings_insert$$
CREATE TRIGGER change_log_listings_insert AFTER INSERT ON listings FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('listings', NEW.id, 'I');
END$$

DROP TRIGGER IF EXISTS change_log_listings_update$$
CREATE TRIGGER change_log_listings_update AFTER UPDATE ON listings FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('listings', NEW.id, 'U');
  IF OLD.id <> NEW.id THEN
    INSERT INTO change_log (entity, entity_id, op) VALUES ('listings', OLD.id, 'D');
  END IF;
END$$

DROP TRIGGER IF EXISTS change_log_listings_delete$$
CREATE TRIGGER change_log_listings_delete AFTER DELETE ON listings FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('listings', OLD.id, 'D');
END$$

DROP TRIGGER IF EXISTS change_log_bookings_insert$$
CREATE TRIGGER change_log_bookings_insert AFTER INSERT ON bookings FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('bookings', NEW.id, 'I');
END$$

DROP TRIGGER IF EXISTS change_log_bookings_update$$
CREATE TRIGGER change_log_bookings_update AFTER UPDATE ON bookings FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('bookings', NEW.id, 'U');
  IF OLD.id <> NEW.id THEN
    INSERT INTO change_log (entity, entity_id, op) VALUES ('bookings', OLD.id, 'D');
  END IF;
END$$

DROP TRIGGER IF EXISTS change_log_bookings_delete$$
CREATE TRIGGER change_log_bookings_delete AFTER DELETE ON bookings FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('bookings', OLD.id, 'D');
END$$

DROP TRIGGER IF EXISTS change_log_payments_insert$$
CREATE TRIGGER change_log_payments_insert AFTER INSERT ON payments FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('payments', NEW.id, 'I');
END$$

DROP TRIGGER IF EXISTS change_log_payments_update$$
CREATE TRIGGER change_log_payments_update AFTER UPDATE ON payments FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('payments', NEW.id, 'U');
  IF OLD.id <> NEW.id THEN
    INSERT INTO change_log (entity, entity_id, op) VALUES ('payments', OLD.id, 'D');
  END IF;
END$$

DROP TRIGGER IF EXISTS change_log_payments_delete$$
CREATE TRIGGER change_log_payments_delete AFTER DELETE ON payments FOR EACH ROW
BEGIN
  INSERT INTO change_log (entity, entity_id, op) VALUES ('payments', OLD.id, 'D');
END$$

DELIMITER ;

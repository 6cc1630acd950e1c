-- The retention sweep deletes change rows older than its limit (`changed_at < cutoff`). Without an index it read,
-- and so locked, every row of the log: with 2.25 million pending changes that and the replicator's SKIP LOCKED
-- claim filled the buffer pool with lock heaps and MariaDB aborted. With it, the sweep reads only the old rows.
CREATE INDEX ix_change_log_changed_at ON change_log (changed_at);

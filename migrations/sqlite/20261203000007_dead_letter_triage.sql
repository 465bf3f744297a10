-- Dead-letter triage: stage, error class, first and last failure time
-- (see the PostgreSQL twin for how older rows are filled in). SQLite
-- cannot add a NOT NULL column without a default, so the defaults stay;
-- the daemon always writes every column.
ALTER TABLE event_listeners_deadletter ADD COLUMN stage TEXT NOT NULL DEFAULT 'run';
ALTER TABLE event_listeners_deadletter ADD COLUMN error_class TEXT NOT NULL DEFAULT 'permanent';
ALTER TABLE event_listeners_deadletter ADD COLUMN first_failed_at TEXT NOT NULL DEFAULT '';
ALTER TABLE event_listeners_deadletter ADD COLUMN last_failed_at TEXT NOT NULL DEFAULT '';

UPDATE event_listeners_deadletter SET
    error_class = CASE
        WHEN error LIKE 'skipped: %' THEN 'circuit'
        WHEN error LIKE 'timed out after %' THEN 'timeout'
        WHEN error LIKE 'panicked: %' THEN 'panic'
        WHEN attempts > 1 THEN 'transient'
        ELSE 'permanent'
    END,
    first_failed_at = created_at,
    last_failed_at = created_at;

CREATE INDEX idx_deadletter_created ON event_listeners_deadletter (created_at);

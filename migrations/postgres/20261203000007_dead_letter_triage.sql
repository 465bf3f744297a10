-- Dead-letter triage (`deadletters list|show|retry|delete`): where a run
-- failed (stage: filter, run or reply), how (error_class: transient,
-- permanent, timeout, panic or circuit), and when it failed first and last.
-- Rows written before this migration were all runs; their class is read
-- from the error text the dispatcher wrote (a skip is the circuit, a
-- timeout and a panic say so; otherwise a run retried more than once was
-- failing transiently, one tried once is taken as permanent), and both
-- times are their created_at.
ALTER TABLE event_listeners_deadletter
    ADD COLUMN stage           TEXT NOT NULL DEFAULT 'run',
    ADD COLUMN error_class     TEXT,
    ADD COLUMN first_failed_at TIMESTAMPTZ,
    ADD COLUMN last_failed_at  TIMESTAMPTZ;

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

ALTER TABLE event_listeners_deadletter
    ALTER COLUMN error_class SET NOT NULL,
    ALTER COLUMN first_failed_at SET NOT NULL,
    ALTER COLUMN last_failed_at SET NOT NULL;

-- `deadletters list --since`, `--class` and the retention of every status.
CREATE INDEX idx_deadletter_created ON event_listeners_deadletter (created_at);

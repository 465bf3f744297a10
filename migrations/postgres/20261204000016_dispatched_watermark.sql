-- The dispatch watermark gets a row of its own, apart from the queue
-- position.
--
-- Both were columns of event_listeners_cursor's one row per instance, so
-- the inbox's transaction (which moves the queue position) and the
-- recorder's (which moves the watermark) locked the same row, each waiting
-- for the other's commit and its WAL flush. A row in a table of its own is
-- locked by the recorder alone. The values move over unchanged; the
-- columns leave the cursor table, so that a query still reading them there
-- fails instead of reading a number that no longer moves.
CREATE TABLE event_listeners_dispatched (
    instance           TEXT PRIMARY KEY,
    -- Every inbox id up to this one has all its runs recorded.
    dispatched_through BIGINT      NOT NULL DEFAULT 0,
    -- Random id of the last recorder batch committed: tells a retry whether
    -- a commit whose answer was lost went through.
    record_batch       BIGINT      NOT NULL DEFAULT 0,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO event_listeners_dispatched (instance, dispatched_through, record_batch, updated_at)
SELECT instance, dispatched_through, record_batch, updated_at FROM event_listeners_cursor;

ALTER TABLE event_listeners_cursor DROP COLUMN dispatched_through, DROP COLUMN record_batch;

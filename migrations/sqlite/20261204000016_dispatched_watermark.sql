-- The dispatch watermark gets a row of its own, apart from the queue
-- position (as on PostgreSQL, where the inbox's and the recorder's
-- transactions locked one row for both; SQLite follows so that the two
-- schemas and the SQL they share stay one). The values move over
-- unchanged; the columns leave the cursor table, so that a query still
-- reading them there fails instead of reading a number that no longer
-- moves.
CREATE TABLE event_listeners_dispatched (
    instance           TEXT PRIMARY KEY,
    -- Every inbox id up to this one has all its runs recorded.
    dispatched_through INTEGER NOT NULL DEFAULT 0,
    -- Random id of the last recorder batch committed.
    record_batch       INTEGER NOT NULL DEFAULT 0,
    updated_at         TEXT    NOT NULL
);

INSERT INTO event_listeners_dispatched (instance, dispatched_through, record_batch, updated_at)
SELECT instance, dispatched_through, record_batch, updated_at FROM event_listeners_cursor;

ALTER TABLE event_listeners_cursor DROP COLUMN dispatched_through;
ALTER TABLE event_listeners_cursor DROP COLUMN record_batch;

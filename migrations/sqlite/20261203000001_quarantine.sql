-- What Zulip sent in GET /events that cannot be an inbox event as it came,
-- kept in the same transaction as the chunk it came in (see the PostgreSQL
-- migration of the same name for the kinds). raw is the element's text,
-- decoded lossily (NULs replaced); raw_bytes the exact bytes whenever raw
-- is not them.
CREATE TABLE event_listeners_quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance    TEXT    NOT NULL,
    queue_id    TEXT    NOT NULL,
    event_id    INTEGER,
    kind        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    raw         TEXT    NOT NULL,
    raw_bytes   BLOB,
    received_at TEXT    NOT NULL
);
CREATE INDEX idx_quarantine_received_at ON event_listeners_quarantine (received_at);

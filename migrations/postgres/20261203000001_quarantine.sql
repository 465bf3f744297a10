-- What Zulip sent in GET /events that cannot be an inbox event as it came,
-- kept in the same transaction as the chunk it came in (so it is never
-- acknowledged without being kept):
--   invalid_utf8   bytes that are not UTF-8 (an event with an id is also in
--                  the inbox, decoded lossily with U+FFFD; event_id names it)
--   repeated_id    a later copy, with other content, of an event id already
--                  stored (the first copy is the one in the inbox and run)
--   no_id          a JSON object without an integer id (missing, float, string)
--   not_an_object  JSON that is not an object
--   not_json       an element that is not JSON
-- raw is the element's text, decoded lossily (NULs replaced); raw_bytes the
-- exact bytes whenever raw is not them. Nothing reads it but operators.
CREATE TABLE event_listeners_quarantine (
    id          BIGSERIAL PRIMARY KEY,
    instance    TEXT        NOT NULL,
    queue_id    TEXT        NOT NULL,
    event_id    BIGINT,
    kind        TEXT        NOT NULL,
    reason      TEXT        NOT NULL,
    raw         TEXT        NOT NULL,
    raw_bytes   BYTEA,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_quarantine_received_at ON event_listeners_quarantine (received_at);

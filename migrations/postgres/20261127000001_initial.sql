-- The received events, exactly as Zulip sent them. raw is TEXT: it keeps
-- the bytes (jsonb would reorder keys and drop duplicates), and the daemon
-- has already parsed every event, so PostgreSQL's own JSON validation would
-- only repeat that work; measured, it is 45% of the insert's cost (50,000
-- 1 KB rows: 745 ms as json, 415 ms as text). Query it as raw::jsonb.
CREATE TABLE event_listeners_inbox (
    id          BIGSERIAL PRIMARY KEY,
    instance    TEXT        NOT NULL,
    queue_id    TEXT        NOT NULL,
    event_id    BIGINT      NOT NULL,
    event_type  TEXT        NOT NULL,
    op          TEXT,
    message_id  BIGINT,
    backfilled  BOOLEAN     NOT NULL DEFAULT FALSE,
    raw         TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (instance, queue_id, event_id)
);
-- A message is stored once per instance, however it arrives (live or backfilled).
CREATE UNIQUE INDEX idx_inbox_message ON event_listeners_inbox (instance, message_id)
    WHERE message_id IS NOT NULL;
-- BRIN: rows arrive in time order, so a block-range index serves cleanup's
-- range scans at a fraction of a B-tree's write cost.
CREATE INDEX idx_inbox_received_at ON event_listeners_inbox USING brin (received_at);

-- Queue position per instance, and how far dispatch has completed.
CREATE TABLE event_listeners_cursor (
    instance           TEXT PRIMARY KEY,
    site               TEXT,
    queue_id           TEXT,
    last_event_id      BIGINT,
    last_message_id    BIGINT,
    dispatched_through BIGINT      NOT NULL DEFAULT 0,
    -- Random id of the last recorder batch committed: tells a retry whether
    -- a commit whose answer was lost went through.
    record_batch       BIGINT      NOT NULL DEFAULT 0,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per listener run. inbox_id is the id of the event's inbox row.
-- It is deliberately not a FOREIGN KEY: the check costs about 40% of the
-- event log's insert time (measured: 100,000 rows in 0.96 s with it, 0.54 s
-- without), and rows are only ever deleted by age, log first.
CREATE TABLE event_listeners_eventlog (
    id            BIGSERIAL PRIMARY KEY,
    listener_name TEXT             NOT NULL,
    inbox_id      BIGINT           NOT NULL,
    event_type    TEXT             NOT NULL,
    success       BOOLEAN          NOT NULL,
    attempts      INTEGER          NOT NULL DEFAULT 1,
    error         TEXT,
    duration      DOUBLE PRECISION NOT NULL,
    timestamp     TIMESTAMPTZ      NOT NULL DEFAULT now()
);
-- The guide's indexes. Runs are logged in time order and in near inbox
-- order, so BRIN serves the timestamp and inbox_id range scans (cleanup,
-- statistics, recovery after a restart) without a B-tree insert per row.
CREATE INDEX idx_event_log_timestamp ON event_listeners_eventlog USING brin (timestamp);
CREATE INDEX idx_event_log_listener_success ON event_listeners_eventlog (listener_name, success);
CREATE INDEX idx_event_log_inbox ON event_listeners_eventlog USING brin (inbox_id);

-- Runs per listener and aggregation bucket.
CREATE TABLE event_listeners_listenerstats (
    id                BIGSERIAL PRIMARY KEY,
    listener_name     TEXT             NOT NULL,
    bucket_start      TIMESTAMPTZ      NOT NULL,
    total_events      BIGINT           NOT NULL DEFAULT 0,
    successful_events BIGINT           NOT NULL DEFAULT 0,
    failed_events     BIGINT           NOT NULL DEFAULT 0,
    total_duration    DOUBLE PRECISION NOT NULL DEFAULT 0,
    max_duration      DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_success      TIMESTAMPTZ,
    UNIQUE (listener_name, bucket_start)
);
CREATE INDEX idx_listener_stats_name ON event_listeners_listenerstats (listener_name);

-- message_logger: one row per message.
CREATE TABLE event_listeners_messagelog (
    message_id     BIGINT PRIMARY KEY,
    inbox_id       BIGINT      NOT NULL,
    sender_id      BIGINT      NOT NULL,
    sender_email   TEXT        NOT NULL,
    recipient_type TEXT        NOT NULL,
    channel        TEXT,
    topic          TEXT,
    dm_recipients  TEXT,
    content_length INTEGER     NOT NULL,
    sent_at        TIMESTAMPTZ NOT NULL
);

-- user_activity_tracker: last seen and counts per user.
CREATE TABLE event_listeners_useractivity (
    user_id        BIGINT PRIMARY KEY,
    email          TEXT,
    last_seen      TIMESTAMPTZ NOT NULL,
    message_count  BIGINT      NOT NULL DEFAULT 0,
    reaction_count BIGINT      NOT NULL DEFAULT 0,
    presence_count BIGINT      NOT NULL DEFAULT 0,
    typing_count   BIGINT      NOT NULL DEFAULT 0
);

-- The received events, exactly as Zulip sent them.
CREATE TABLE event_listeners_inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance    TEXT    NOT NULL,
    queue_id    TEXT    NOT NULL,
    event_id    INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    op          TEXT,
    message_id  INTEGER,
    backfilled  BOOLEAN NOT NULL DEFAULT 0,
    raw         TEXT    NOT NULL,
    received_at TEXT    NOT NULL,
    UNIQUE (instance, queue_id, event_id)
);
CREATE UNIQUE INDEX idx_inbox_message ON event_listeners_inbox (instance, message_id)
    WHERE message_id IS NOT NULL;
CREATE INDEX idx_inbox_received_at ON event_listeners_inbox (received_at);

CREATE TABLE event_listeners_cursor (
    instance           TEXT PRIMARY KEY,
    site               TEXT,
    queue_id           TEXT,
    last_event_id      INTEGER,
    last_message_id    INTEGER,
    dispatched_through INTEGER NOT NULL DEFAULT 0,
    record_batch       INTEGER NOT NULL DEFAULT 0,
    updated_at         TEXT    NOT NULL
);

CREATE TABLE event_listeners_eventlog (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    listener_name TEXT    NOT NULL,
    inbox_id      INTEGER NOT NULL,
    event_type    TEXT    NOT NULL,
    success       BOOLEAN NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    error         TEXT,
    duration      REAL    NOT NULL,
    timestamp     TEXT    NOT NULL
);
CREATE INDEX idx_event_log_timestamp ON event_listeners_eventlog (timestamp);
CREATE INDEX idx_event_log_listener_success ON event_listeners_eventlog (listener_name, success);
CREATE INDEX idx_event_log_inbox ON event_listeners_eventlog (inbox_id);

CREATE TABLE event_listeners_listenerstats (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    listener_name     TEXT    NOT NULL,
    bucket_start      TEXT    NOT NULL,
    total_events      INTEGER NOT NULL DEFAULT 0,
    successful_events INTEGER NOT NULL DEFAULT 0,
    failed_events     INTEGER NOT NULL DEFAULT 0,
    total_duration    REAL    NOT NULL DEFAULT 0,
    max_duration      REAL    NOT NULL DEFAULT 0,
    last_success      TEXT,
    UNIQUE (listener_name, bucket_start)
);
CREATE INDEX idx_listener_stats_name ON event_listeners_listenerstats (listener_name);

CREATE TABLE event_listeners_messagelog (
    message_id     INTEGER PRIMARY KEY,
    inbox_id       INTEGER NOT NULL,
    sender_id      INTEGER NOT NULL,
    sender_email   TEXT    NOT NULL,
    recipient_type TEXT    NOT NULL,
    channel        TEXT,
    topic          TEXT,
    dm_recipients  TEXT,
    content_length INTEGER NOT NULL,
    sent_at        TEXT    NOT NULL
);

CREATE TABLE event_listeners_useractivity (
    user_id        INTEGER PRIMARY KEY,
    email          TEXT,
    last_seen      TEXT    NOT NULL,
    message_count  INTEGER NOT NULL DEFAULT 0,
    reaction_count INTEGER NOT NULL DEFAULT 0,
    presence_count INTEGER NOT NULL DEFAULT 0,
    typing_count   INTEGER NOT NULL DEFAULT 0
);

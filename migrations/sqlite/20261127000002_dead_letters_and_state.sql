-- Runs that failed for the last time, kept for `replay` (see the PostgreSQL twin).
CREATE TABLE event_listeners_deadletter (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    listener_name  TEXT    NOT NULL,
    inbox_id       INTEGER NOT NULL REFERENCES event_listeners_inbox (id) ON DELETE CASCADE,
    event_type     TEXT    NOT NULL,
    error          TEXT,
    attempts       INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT    NOT NULL,
    replayed_at    TEXT,
    replay_success BOOLEAN
);
CREATE INDEX idx_deadletter_pending ON event_listeners_deadletter (listener_name, created_at)
    WHERE replayed_at IS NULL;
CREATE INDEX idx_deadletter_inbox ON event_listeners_deadletter (inbox_id);

CREATE TABLE event_listeners_listenerstate (
    listener_name TEXT PRIMARY KEY,
    enabled       BOOLEAN NOT NULL,
    reason        TEXT,
    changed_by    TEXT    NOT NULL,
    changed_at    TEXT    NOT NULL
);

CREATE TABLE event_listeners_audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT    NOT NULL,
    actor         TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    listener_name TEXT,
    detail        TEXT
);
CREATE INDEX idx_audit_at ON event_listeners_audit (at);

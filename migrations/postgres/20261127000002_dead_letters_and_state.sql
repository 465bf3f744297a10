-- Runs that failed for the last time, kept for `replay`. A replay marks
-- the row (replayed_at, replay_success); a replay that fails again adds a
-- new row, so the pending dead letters are the rows not yet replayed.
CREATE TABLE event_listeners_deadletter (
    id             BIGSERIAL PRIMARY KEY,
    listener_name  TEXT        NOT NULL,
    inbox_id       BIGINT      NOT NULL REFERENCES event_listeners_inbox (id) ON DELETE CASCADE,
    event_type     TEXT        NOT NULL,
    error          TEXT,
    attempts       INTEGER     NOT NULL DEFAULT 1,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at    TIMESTAMPTZ,
    replay_success BOOLEAN
);
-- "Pending dead letters of listener X since T" (`replay --listener X --since T`).
CREATE INDEX idx_deadletter_pending ON event_listeners_deadletter (listener_name, created_at)
    WHERE replayed_at IS NULL;
-- `replay --event ID`, and the cascade when cleanup deletes inbox rows.
CREATE INDEX idx_deadletter_inbox ON event_listeners_deadletter (inbox_id);

-- Listeners switched off (or back on) with `disable` / `enable`, and why.
CREATE TABLE event_listeners_listenerstate (
    listener_name TEXT PRIMARY KEY,
    enabled       BOOLEAN     NOT NULL,
    reason        TEXT,
    changed_by    TEXT        NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who did what: enable, disable, replay, cleanup.
CREATE TABLE event_listeners_audit (
    id            BIGSERIAL PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor         TEXT        NOT NULL,
    action        TEXT        NOT NULL,
    listener_name TEXT,
    detail        TEXT
);
CREATE INDEX idx_audit_at ON event_listeners_audit (at);

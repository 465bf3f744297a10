-- Record::Data: a listener's own state, one JSON value per (listener, key),
-- written in the same transaction as the run that set it.
CREATE TABLE event_listeners_listenerdata (
    listener_name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    inbox_id INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (listener_name, key)
);

-- Record::Reply: messages listeners send, written with their run and posted
-- by the reply sender exactly once (`local_id` = 'zel-' || id).
-- status: pending (not posted yet), sending (a POST may have reached
-- Zulip: confirmed by the echo of its local_id, or resent), sent, failed.
CREATE TABLE event_listeners_replyoutbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance TEXT NOT NULL,
    listener_name TEXT NOT NULL,
    inbox_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    recipient_type TEXT NOT NULL,
    channel TEXT,
    topic TEXT,
    user_ids TEXT,
    content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    queue_id TEXT,
    message_id INTEGER,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (listener_name, inbox_id, seq)
);
CREATE INDEX idx_replyoutbox_open ON event_listeners_replyoutbox (instance, id)
    WHERE status IN ('pending', 'sending');

-- message_logger follows the conversation: see the PostgreSQL migration.
ALTER TABLE event_listeners_messagelog ADD COLUMN channel_id INTEGER;
ALTER TABLE event_listeners_messagelog ADD COLUMN edited_at TEXT;
ALTER TABLE event_listeners_messagelog ADD COLUMN moved_at TEXT;
ALTER TABLE event_listeners_messagelog ADD COLUMN deleted_at TEXT;

ALTER TABLE event_listeners_useractivity ADD COLUMN edit_count INTEGER NOT NULL DEFAULT 0;

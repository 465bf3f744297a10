-- Encryption at rest ([data_protection] encrypt_sensitive_data): the id of
-- the key that sealed a row's sensitive column (the first 8 hex digits of
-- the key's SHA-256), NULL for a row stored in plain text. The sealed value
-- replaces the plain one in its own column, as base64 text:
-- event_listeners_inbox.raw, event_listeners_replyoutbox.content, and
-- event_listeners_listenerdata.value (as a JSON string). The other columns
-- (event type, op, message id, listener names, reply recipients) stay plain:
-- queries, indexes and retention read them.
ALTER TABLE event_listeners_inbox ADD COLUMN key_id TEXT;
ALTER TABLE event_listeners_listenerdata ADD COLUMN key_id TEXT;
ALTER TABLE event_listeners_replyoutbox ADD COLUMN key_id TEXT;

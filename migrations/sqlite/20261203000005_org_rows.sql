-- The message log and user activity belong to an organization (see the
-- PostgreSQL migration): `instance` leads their keys, so two organizations
-- reusing a message id or user id keep a row each. SQLite cannot change a
-- primary key in place: each table is rebuilt (create, copy, drop, rename;
-- neither has an index besides its key). Existing rows get the instance of
-- their inbox row (message log) or, for user activity and a message whose
-- inbox row is gone, the one instance of event_listeners_cursor when there
-- is exactly one, else ''.
CREATE TABLE event_listeners_messagelog_new (
    instance       TEXT    NOT NULL,
    message_id     INTEGER NOT NULL,
    inbox_id       INTEGER NOT NULL,
    sender_id      INTEGER NOT NULL,
    sender_email   TEXT    NOT NULL,
    recipient_type TEXT    NOT NULL,
    channel        TEXT,
    topic          TEXT,
    dm_recipients  TEXT,
    content_length INTEGER NOT NULL,
    sent_at        TEXT    NOT NULL,
    channel_id     INTEGER,
    edited_at      TEXT,
    moved_at       TEXT,
    deleted_at     TEXT,
    PRIMARY KEY (instance, message_id)
);
INSERT INTO event_listeners_messagelog_new
    (instance, message_id, inbox_id, sender_id, sender_email, recipient_type, channel, topic,
     dm_recipients, content_length, sent_at, channel_id, edited_at, moved_at, deleted_at)
SELECT COALESCE(
           (SELECT i.instance FROM event_listeners_inbox i WHERE i.id = m.inbox_id),
           (SELECT CASE WHEN count(*) = 1 THEN max(instance) ELSE '' END
              FROM event_listeners_cursor)),
       m.message_id, m.inbox_id, m.sender_id, m.sender_email, m.recipient_type, m.channel,
       m.topic, m.dm_recipients, m.content_length, m.sent_at, m.channel_id, m.edited_at,
       m.moved_at, m.deleted_at
  FROM event_listeners_messagelog m;
DROP TABLE event_listeners_messagelog;
ALTER TABLE event_listeners_messagelog_new RENAME TO event_listeners_messagelog;

CREATE TABLE event_listeners_useractivity_new (
    instance       TEXT    NOT NULL,
    user_id        INTEGER NOT NULL,
    email          TEXT,
    last_seen      TEXT    NOT NULL,
    message_count  INTEGER NOT NULL DEFAULT 0,
    reaction_count INTEGER NOT NULL DEFAULT 0,
    presence_count INTEGER NOT NULL DEFAULT 0,
    typing_count   INTEGER NOT NULL DEFAULT 0,
    edit_count     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, user_id)
);
INSERT INTO event_listeners_useractivity_new
    (instance, user_id, email, last_seen, message_count, reaction_count, presence_count,
     typing_count, edit_count)
SELECT (SELECT CASE WHEN count(*) = 1 THEN max(instance) ELSE '' END
          FROM event_listeners_cursor),
       user_id, email, last_seen, message_count, reaction_count, presence_count,
       typing_count, edit_count
  FROM event_listeners_useractivity;
DROP TABLE event_listeners_useractivity;
ALTER TABLE event_listeners_useractivity_new RENAME TO event_listeners_useractivity;

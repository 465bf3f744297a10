-- The message log and user activity belong to an organization (issue 14,
-- item 1): `instance` (the organization's name, as in the inbox, cursor
-- and outboxes) leads their keys, so two organizations reusing a message
-- id or a user id keep a row each, and an edit, move or deletion in one
-- organization changes only its own row.
--
-- Existing rows: a message log row gets the instance of its inbox row.
-- User activity is not tied to an inbox row: it (and a message whose inbox
-- row is gone) gets the one instance of event_listeners_cursor when there
-- is exactly one (a single organization ran, the usual case), else '' (the
-- counts of several organizations were merged and cannot be split; they
-- stay readable under '' and each organization counts afresh).
ALTER TABLE event_listeners_messagelog ADD COLUMN instance TEXT NOT NULL DEFAULT '';
UPDATE event_listeners_messagelog m
   SET instance = COALESCE(
       (SELECT i.instance FROM event_listeners_inbox i WHERE i.id = m.inbox_id),
       (SELECT CASE WHEN count(*) = 1 THEN max(instance) ELSE '' END
          FROM event_listeners_cursor));
ALTER TABLE event_listeners_messagelog ALTER COLUMN instance DROP DEFAULT;
ALTER TABLE event_listeners_messagelog DROP CONSTRAINT event_listeners_messagelog_pkey;
ALTER TABLE event_listeners_messagelog ADD PRIMARY KEY (instance, message_id);

ALTER TABLE event_listeners_useractivity ADD COLUMN instance TEXT NOT NULL DEFAULT '';
UPDATE event_listeners_useractivity
   SET instance = (SELECT CASE WHEN count(*) = 1 THEN max(instance) ELSE '' END
                     FROM event_listeners_cursor);
ALTER TABLE event_listeners_useractivity ALTER COLUMN instance DROP DEFAULT;
ALTER TABLE event_listeners_useractivity DROP CONSTRAINT event_listeners_useractivity_pkey;
ALTER TABLE event_listeners_useractivity ADD PRIMARY KEY (instance, user_id);

-- message_logger follows the conversation (issue 12, item 2): a content
-- edit sets edited_at (and content_length), a move to another topic or
-- channel sets moved_at (and topic, channel, channel_id), a deletion sets
-- deleted_at; the row stays, so an audit sees what was deleted and when.
-- channel_id is the channel's id, which Zulip's edit events carry (not its
-- name); rows logged before this migration have none.
ALTER TABLE event_listeners_messagelog ADD COLUMN channel_id BIGINT;
ALTER TABLE event_listeners_messagelog ADD COLUMN edited_at TIMESTAMPTZ;
ALTER TABLE event_listeners_messagelog ADD COLUMN moved_at TIMESTAMPTZ;
ALTER TABLE event_listeners_messagelog ADD COLUMN deleted_at TIMESTAMPTZ;

-- user_activity_tracker counts edits (and moves) by whoever made them.
ALTER TABLE event_listeners_useractivity ADD COLUMN edit_count BIGINT NOT NULL DEFAULT 0;

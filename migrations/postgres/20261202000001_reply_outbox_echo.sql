-- The reply sender's confirmation by echo: the highest inbox id when a reply
-- was first marked 'sending'. The message event that echoes the reply's
-- local_id ('zel-' || id) can only be stored after that, so the search for
-- it reads inbox rows above this id only.
ALTER TABLE event_listeners_replyoutbox ADD COLUMN echo_after BIGINT;
-- cleanup deletes sent replies by age.
CREATE INDEX idx_replyoutbox_sent ON event_listeners_replyoutbox (updated_at)
    WHERE status = 'sent';

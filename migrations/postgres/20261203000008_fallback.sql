-- Fallback listeners (`[listeners.NAME] fallback`): a dead letter whose
-- event was handed to a fallback names it and says how its run ended
-- ('ran_ok' or 'failed'). The fallback's run commits in the same
-- transaction as this row, so a fallback that has not run has no row yet.
ALTER TABLE event_listeners_deadletter ADD COLUMN fallback_listener TEXT;
ALTER TABLE event_listeners_deadletter ADD COLUMN fallback_outcome TEXT;

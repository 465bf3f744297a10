-- The audit trail names what an action was about (a listener, a path, a
-- migration) as its target, and whether it succeeded: one row per operator
-- action (CLI, admin API) and automatic disable, when
-- [data_protection] audit_trail is on.
ALTER TABLE event_listeners_audit RENAME COLUMN listener_name TO target;
ALTER TABLE event_listeners_audit ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok';

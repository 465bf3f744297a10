-- The event log, compact. A row per listener run cost more server CPU
-- than the event's own inbox row once an event had a few listeners: each
-- is a heap tuple, a WAL record and an entry in every index. Measured
-- alone, 10,000 events with 16 runs each took 36 µs of server CPU per event
-- as rows and 6 µs as one row per event holding the runs as arrays.
--
-- Successful runs are now logged in event_listeners_eventruns: one row per
-- event and recorder batch (an event's runs nearly always commit together),
-- with the listeners, attempts, durations and finish times (as
-- microseconds before the newest, logged_at) as parallel arrays. Every other run (a failure, a run with
-- an error text such as `cursor skip`'s, a dead letter) and every row
-- written before this migration stays in the guide's table, renamed
-- event_listeners_eventlog_rows. event_listeners_eventlog is a view of
-- both in the guide's shape, so its SQL, `stats` and the runbooks keep
-- working:
--   * WHERE NOT success reads only the rows table (the view's success is
--     a constant TRUE for compact runs, so that branch is planned away);
--   * WHERE inbox_id filters reach both tables' BRIN indexes (recovery's
--     logged runs); a filter on timestamp (the operator's `stats`, `list`,
--     `aggregate`) reads the compact table whole, a row per event, and
--     cleanup and retention delete by logged_at, the newest run's finish;
--   * the id of a compact run is its row's, from the same sequence, so
--     "logged at or before id N" (`cursor rewind`) means what it did;
--   * an INSERT into the view is written to the rows table (a rule).
-- UPDATE and DELETE on the view are refused by PostgreSQL: the daemon's
-- cleanup and retention delete from both tables.
ALTER TABLE event_listeners_eventlog RENAME TO event_listeners_eventlog_rows;

CREATE TABLE event_listeners_eventruns (
    id         BIGINT      NOT NULL DEFAULT nextval('event_listeners_eventlog_id_seq'),
    inbox_id   BIGINT      NOT NULL,
    event_type TEXT        NOT NULL,
    logged_at  TIMESTAMPTZ NOT NULL,
    listeners  TEXT[]      NOT NULL,
    attempts   INTEGER[]   NOT NULL,
    durations  DOUBLE PRECISION[] NOT NULL,
    behind     BIGINT[]    NOT NULL
);
CREATE INDEX idx_eventruns_inbox ON event_listeners_eventruns USING brin (inbox_id);
CREATE INDEX idx_eventruns_logged_at ON event_listeners_eventruns USING brin (logged_at);

CREATE VIEW event_listeners_eventlog AS
    SELECT id, listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp
    FROM event_listeners_eventlog_rows
    UNION ALL
    SELECT r.id, u.listener_name, r.inbox_id, r.event_type, TRUE, u.attempts, NULL::text,
           u.duration, r.logged_at - u.behind * interval '1 microsecond'
    FROM event_listeners_eventruns r
    CROSS JOIN LATERAL UNNEST(r.listeners, r.attempts, r.durations, r.behind)
        AS u(listener_name, attempts, duration, behind);
ALTER VIEW event_listeners_eventlog ALTER COLUMN id SET DEFAULT nextval('event_listeners_eventlog_id_seq');
ALTER VIEW event_listeners_eventlog ALTER COLUMN attempts SET DEFAULT 1;
ALTER VIEW event_listeners_eventlog ALTER COLUMN timestamp SET DEFAULT now();

-- A rule, not a trigger: it is part of the view, so a `pg_dump --table
-- 'event_listeners_*'` (contrib/backup.sh) carries it, where a trigger's
-- function would be left behind.
CREATE RULE event_listeners_eventlog_insert AS ON INSERT TO event_listeners_eventlog
    DO INSTEAD
    INSERT INTO event_listeners_eventlog_rows
        (id, listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp)
    VALUES (NEW.id, NEW.listener_name, NEW.inbox_id, NEW.event_type, NEW.success, NEW.attempts,
            NEW.error, NEW.duration, NEW.timestamp)
    RETURNING id, listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp;

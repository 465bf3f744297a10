-- The compact event log, one row per recorder batch instead of one per
-- event. A row per event still cost each event a heap tuple, a WAL record
-- and four array literals parsed by the server (and formatted by the
-- daemon). Measured with the benchmark (100,000 events, two listeners,
-- builds alternating), leaving the compact log out altogether lifted
-- PostgreSQL from 44,000-48,000 to 53,000-61,000 events/s and cut the
-- server's CPU per event from 17-18 to 12-15 µs; a row per batch costs
-- ~0.6 µs per event of that back.
--
-- Each run is an element of the row's parallel arrays (inbox id, event
-- type, listener, attempts, duration, finish as µs before logged_at, the
-- newest finish). first_inbox/last_inbox bound the row's inbox ids, for
-- the daemon's lookups by inbox id (recovery's logged runs, a worker's),
-- which read the tables themselves with that bound; the view, which
-- PostgreSQL cannot narrow by an element of an array, unnests every row.
-- Every run of a row shares its id, from the event log's sequence, so
-- "logged at or before id N" (`cursor rewind`) means what it did.
--
-- The rows of the per-event table are carried over, each as a row of its
-- own (a batch of one event).
ALTER TABLE event_listeners_eventruns RENAME TO event_listeners_eventruns_by_event;

CREATE TABLE event_listeners_eventruns (
    id          BIGINT      NOT NULL DEFAULT nextval('event_listeners_eventlog_id_seq'),
    first_inbox BIGINT      NOT NULL,
    last_inbox  BIGINT      NOT NULL,
    logged_at   TIMESTAMPTZ NOT NULL,
    inbox_ids   BIGINT[]    NOT NULL,
    event_types TEXT[]      NOT NULL,
    listeners   TEXT[]      NOT NULL,
    attempts    INTEGER[]   NOT NULL,
    durations   DOUBLE PRECISION[] NOT NULL,
    behind      BIGINT[]    NOT NULL
);

INSERT INTO event_listeners_eventruns
    (id, first_inbox, last_inbox, logged_at, inbox_ids, event_types, listeners, attempts,
     durations, behind)
SELECT id, inbox_id, inbox_id, logged_at,
       array_fill(inbox_id, ARRAY[cardinality(listeners)]),
       array_fill(event_type, ARRAY[cardinality(listeners)]),
       listeners, attempts, durations, behind
FROM event_listeners_eventruns_by_event
ORDER BY id;

-- The view (and its rule) over the new table; the guide's shape as before.
DROP VIEW event_listeners_eventlog;
DROP TABLE event_listeners_eventruns_by_event;

CREATE INDEX idx_eventruns_last_inbox ON event_listeners_eventruns USING brin (last_inbox);
CREATE INDEX idx_eventruns_logged_at ON event_listeners_eventruns USING brin (logged_at);

CREATE VIEW event_listeners_eventlog AS
    SELECT id, listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp
    FROM event_listeners_eventlog_rows
    UNION ALL
    SELECT r.id, u.listener_name, u.inbox_id, u.event_type, TRUE, u.attempts, NULL::text,
           u.duration, r.logged_at - u.behind * interval '1 microsecond'
    FROM event_listeners_eventruns r
    CROSS JOIN LATERAL UNNEST(r.inbox_ids, r.event_types, r.listeners, r.attempts, r.durations,
                              r.behind)
        AS u(inbox_id, event_type, listener_name, attempts, duration, behind);
ALTER VIEW event_listeners_eventlog ALTER COLUMN id SET DEFAULT nextval('event_listeners_eventlog_id_seq');
ALTER VIEW event_listeners_eventlog ALTER COLUMN attempts SET DEFAULT 1;
ALTER VIEW event_listeners_eventlog ALTER COLUMN timestamp SET DEFAULT now();

CREATE RULE event_listeners_eventlog_insert AS ON INSERT TO event_listeners_eventlog
    DO INSTEAD
    INSERT INTO event_listeners_eventlog_rows
        (id, listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp)
    VALUES (NEW.id, NEW.listener_name, NEW.inbox_id, NEW.event_type, NEW.success, NEW.attempts,
            NEW.error, NEW.duration, NEW.timestamp)
    RETURNING id, listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp;

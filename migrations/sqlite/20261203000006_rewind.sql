-- `cursor rewind`: one row per (instance, listener) an operator rewound.
-- Nothing is deleted: the rewind moves the instance's dispatched_through
-- back below from_inbox_id, and at the next start the recovery counts a
-- chosen listener's event-log rows for inbox ids from from_inbox_id on as
-- done only when they are newer than the rewind (id above eventlog_through),
-- so exactly those runs are made again.
CREATE TABLE event_listeners_rewind (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    instance         TEXT    NOT NULL,
    listener_name    TEXT    NOT NULL,
    from_inbox_id    INTEGER    NOT NULL,
    eventlog_through INTEGER    NOT NULL,
    requested_by     TEXT    NOT NULL,
    requested_at     TEXT     NOT NULL
);
CREATE INDEX idx_rewind_instance ON event_listeners_rewind (instance, listener_name);

-- The workers of a distributed deployment (`run --role worker`), one row
-- each, heartbeated every lease_seconds / 3: the live ones (a heartbeat
-- within lease_seconds), sorted by worker_id, split the partitions between
-- them (worker i of n consumes the partitions p with p % n = i).
CREATE TABLE event_listeners_workers (
    instance     TEXT        NOT NULL,
    worker_id    TEXT        NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, worker_id)
);

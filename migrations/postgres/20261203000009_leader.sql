-- The distributed mode's lease (issue 16): one row per instance. The ingest
-- that takes the instance's advisory lock bumps `epoch` (its fencing token);
-- every cursor and outbox write of an ingest is conditional on its epoch in
-- the same transaction, so a demoted leader can never commit one. The
-- leader's publisher moves `published_through` (the highest inbox id whose
-- broker confirm arrived) forward.
CREATE TABLE event_listeners_leader (
    instance TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    holder TEXT,
    renewed_at TIMESTAMPTZ,
    published_through BIGINT NOT NULL DEFAULT 0
);

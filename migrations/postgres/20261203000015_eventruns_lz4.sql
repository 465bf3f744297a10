-- The compact event log's arrays compressed with LZ4 where the server has
-- it (PostgreSQL 14 and later, built with lz4, as the PGDG and Debian
-- packages and the official images are). A recorder batch's row is tens
-- to hundreds of KB, so it is always compressed, and PostgreSQL's default,
-- pglz, was the dearest part of it: measured alone, 1,000 events with 16
-- runs each took 12.8 µs of server CPU per event as pglz and 0.4 µs as
-- lz4, at 201 and 168 bytes per event on disk. Only values written from
-- now on are affected. A server without lz4 keeps pglz.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        EXECUTE 'ALTER TABLE event_listeners_eventruns
                   ALTER COLUMN inbox_ids SET COMPRESSION lz4,
                   ALTER COLUMN event_types SET COMPRESSION lz4,
                   ALTER COLUMN listeners SET COMPRESSION lz4,
                   ALTER COLUMN attempts SET COMPRESSION lz4,
                   ALTER COLUMN durations SET COMPRESSION lz4,
                   ALTER COLUMN behind SET COMPRESSION lz4';
    END IF;
END $$;

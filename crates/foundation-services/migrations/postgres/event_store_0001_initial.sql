-- EventStore, version 1: the append-only log, one row per stream with its
-- current version, and the log's counters.
--
-- `meta.last_id` is the serialised `$all` row: every append transaction
-- locks it (SELECT ... FOR UPDATE) before it gives ids, so ids are given
-- in commit order and a reader never sees a later id before an earlier
-- one. `meta.first_available` is the horizon: every id below it was
-- pruned.
CREATE TABLE events (
    id bigint PRIMARY KEY,
    stream text NOT NULL,
    stream_version bigint NOT NULL,
    kind text NOT NULL,
    ts_ms bigint NOT NULL,
    node text NOT NULL,
    correlation_id text,
    causation_id bigint,
    idempotency_key text,
    metadata text,
    data text NOT NULL
);
CREATE UNIQUE INDEX events_by_stream ON events (stream, stream_version);
CREATE UNIQUE INDEX events_by_idempotency_key ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_by_kind ON events (kind);
CREATE INDEX events_by_time ON events (ts_ms);
CREATE INDEX events_by_correlation ON events (correlation_id)
    WHERE correlation_id IS NOT NULL;
CREATE TABLE streams (
    stream text PRIMARY KEY,
    version bigint NOT NULL
);
CREATE TABLE meta (
    key text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO meta (key, value) VALUES ('last_id', 0), ('first_available', 1);

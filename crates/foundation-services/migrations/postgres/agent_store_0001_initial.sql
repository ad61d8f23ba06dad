-- Agent store, version 1: one row per agent, in id order. `version` is the
-- record's stored form (supervision-core's AGENT_RECORD_VERSION).
CREATE TABLE agents (
    id text PRIMARY KEY COLLATE "C",
    version integer NOT NULL,
    generation bigint NOT NULL,
    kind text NOT NULL,
    config text NOT NULL,
    args text NOT NULL,
    restart text NOT NULL,
    status text NOT NULL,
    restart_count bigint NOT NULL,
    passivated boolean NOT NULL,
    checkpoint_format bigint,
    checkpoint bytea
);

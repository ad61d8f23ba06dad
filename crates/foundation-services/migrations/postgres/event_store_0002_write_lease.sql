-- EventStore, version 2: one writer at a time holds the schema's write
-- lease (a session advisory lock) and gives ids and stream versions from
-- the log's head it read when it took the lease. Appends no longer move
-- `meta.last_id` or `streams.version`: a stream's row is written with its
-- first event (version 0), and pruning moves both to the newest id and
-- versions it deletes, so that the head of the log and of each stream is
-- the greater of the rows and the newest event. A build of version 1
-- would give ids from `meta.last_id`: it refuses this schema.
COMMENT ON TABLE streams IS
    'every stream; version: the newest version pruned (the head is the greater of it and the newest event)';
COMMENT ON TABLE meta IS
    'last_id: the newest id pruned (the head is the greater of it and the newest event); first_available: the horizon';

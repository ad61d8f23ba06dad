-- Agent store, version 2: the fenced ownership of each agent in a
-- cluster (supervision-core's `Ownership`). One row per agent ever
-- claimed: the owning member (node and generation; both NULL once
-- released) and the epoch, which grows with every change of owner and is
-- never reset. A fenced write to `agents` locks its agent's row here
-- (FOR SHARE) and is refused unless its member owns the agent.
CREATE TABLE agent_owners (
    agent text PRIMARY KEY COLLATE "C",
    node text,
    generation bigint,
    epoch bigint NOT NULL
);
CREATE INDEX agent_owners_by_member ON agent_owners (node, generation);

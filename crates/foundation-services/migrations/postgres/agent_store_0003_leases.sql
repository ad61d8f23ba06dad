-- Agent store, version 3: the lease of each node incarnation (node and
-- generation), as Orleans keeps a membership table. A member renews its
-- row every fraction of its lease; every time is the server's `now()`,
-- never a node's clock. A survivor that sees a member down marks its row
-- dead (its renewals are refused from then on) and takes over its claims
-- only once `expires_at` has passed by the server's clock; the member
-- itself stops its agents before that, by its own clock measured from
-- when it sent its last renewal that succeeded.
CREATE TABLE node_leases (
    node text NOT NULL COLLATE "C",
    generation bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    dead boolean NOT NULL DEFAULT false,
    PRIMARY KEY (node, generation)
);

-- Who suspects whom: a member that sees another down records it here; the
-- other is declared dead (its lease row marked) only once a majority of
-- the members whose leases run suspect it, as Orleans counts votes for a
-- death declaration: one node's flapping view kills no one.
CREATE TABLE node_suspicions (
    node text NOT NULL COLLATE "C",
    generation bigint NOT NULL,
    suspecter text NOT NULL COLLATE "C",
    suspecter_generation bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, generation, suspecter, suspecter_generation)
);

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

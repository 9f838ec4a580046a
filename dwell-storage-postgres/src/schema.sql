-- Notices ("already exists, skipping") are not worth a log line at every connection.
SET client_min_messages = warning;
-- Dwell's logical tables (see dwell-storage's `Tables`). Records are one schema-version
-- byte followed by MessagePack, as in the redb file; keys are columns, and text keys
-- sort bytewise (COLLATE "C") so prefix and range scans match redb's order. An actor's
-- rows have a partition column (still 0: a cluster node computes the partition from the
-- key, FNV-1a of it modulo the cluster's count).
CREATE TABLE IF NOT EXISTS dwell_schema (version int PRIMARY KEY);
CREATE TABLE IF NOT EXISTS partitions (
    partition int PRIMARY KEY,
    epoch bigint NOT NULL,
    owner text NOT NULL
);
CREATE TABLE IF NOT EXISTS actors (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" PRIMARY KEY,
    meta bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS states (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" PRIMARY KEY,
    state bytea NOT NULL
);
-- Large states in slices, written ahead of their turn's commit: staged while no
-- state_refs row names their id, the actor's state once one does.
CREATE TABLE IF NOT EXISTS state_slices (
    id bigint NOT NULL,
    index int NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (id, index)
);
CREATE TABLE IF NOT EXISTS state_refs (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" PRIMARY KEY,
    id bigint NOT NULL,
    len bigint NOT NULL,
    slices int NOT NULL
);
CREATE INDEX IF NOT EXISTS state_refs_id ON state_refs (id);
CREATE TABLE IF NOT EXISTS mailbox (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    envelope bytea NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    letter bytea NOT NULL,
    PRIMARY KEY (key, seq)
);
-- Turn history: one record per committed turn (key, seq = the message it handled), and
-- the state after the most recent turns.
CREATE TABLE IF NOT EXISTS history (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE IF NOT EXISTS history_states (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE IF NOT EXISTS requests (
    partition int NOT NULL DEFAULT 0,
    id bytea PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS modules (
    key text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS module_bytes (
    digest text COLLATE "C" PRIMARY KEY,
    bytes bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS timers (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    due bigint NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (key, name)
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (due, key, name);
CREATE TABLE IF NOT EXISTS outbox (
    partition int NOT NULL DEFAULT 0,
    id bytea PRIMARY KEY,
    due bigint NOT NULL,
    entry bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due, id);
CREATE TABLE IF NOT EXISTS http_pending (
    partition int NOT NULL DEFAULT 0,
    key text COLLATE "C" NOT NULL,
    call text COLLATE "C" NOT NULL,
    id bytea NOT NULL,
    PRIMARY KEY (key, call)
);
CREATE TABLE IF NOT EXISTS idempotency (
    partition int NOT NULL DEFAULT 0,
    tenant text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    expires bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency (expires, tenant, key);
CREATE TABLE IF NOT EXISTS tenants (
    name text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_names (
    id text COLLATE "C" PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE IF NOT EXISTS actor_counts (
    tenant text COLLATE "C" PRIMARY KEY,
    count bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
-- Cluster membership (cluster.rs): the partition count, fixed when the first node makes
-- the cluster; the nodes and their leases (times from this server's clock only).
CREATE TABLE IF NOT EXISTS cluster (
    id int PRIMARY KEY CHECK (id = 1),
    partitions int NOT NULL CHECK (partitions > 0)
);
CREATE TABLE IF NOT EXISTS nodes (
    node text COLLATE "C" PRIMARY KEY,
    advertise text NOT NULL,
    lease_until timestamptz NOT NULL
);
INSERT INTO dwell_schema (version) VALUES (1) ON CONFLICT DO NOTHING;
INSERT INTO partitions (partition, epoch, owner) VALUES (0, 1, '') ON CONFLICT DO NOTHING;
-- Messages for actors another node runs (a cluster's cross-partition sends): written in
-- the sender's transaction, taken by the owner of `partition` in the transaction that
-- puts them in the mailbox.
CREATE TABLE IF NOT EXISTS inbox (
    id bigserial PRIMARY KEY,
    partition int NOT NULL,
    key text COLLATE "C" NOT NULL,
    envelope bytea NOT NULL
);

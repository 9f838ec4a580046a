//! Table definitions. Keys are chosen so that the scans the runtime needs are range
//! scans: an actor's mailbox and dead letters are contiguous under its storage key.

use redb::{TableDefinition, WriteTransaction};

/// `tenant/module/key` → [`dwell_types::records::ActorMeta`]
pub const ACTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("actors");
/// `tenant/module/key` → state snapshot (guest MessagePack, stored as given)
pub const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("states");
/// `(actor, seq)` → [`dwell_types::Envelope`]
pub const MAILBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("mailbox");
/// request id → [`dwell_types::records::RequestRecord`]
pub const REQUESTS: TableDefinition<u128, &[u8]> = TableDefinition::new("requests");
/// `(actor, seq)` → [`dwell_types::records::DeadLetter`]
pub const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
/// `tenant/name` → [`dwell_types::records::ModuleRecord`]
pub const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
/// digest → component bytes
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("module_bytes");

/// `(due, actor, name)` → timer payload: the next due timer is the first key.
pub const TIMERS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("timers");
/// `(actor, name)` → due: find, replace and list an actor's timers.
pub const TIMER_INDEX: TableDefinition<(&str, &str), u64> = TableDefinition::new("timer_index");
/// id → [`crate::records::OutboxEntry`]
pub const OUTBOX: TableDefinition<u128, &[u8]> = TableDefinition::new("outbox");
/// `(due, id)` → (): the next delivery is the first key.
pub const OUTBOX_DUE: TableDefinition<(u64, u128), ()> = TableDefinition::new("outbox_due");
/// `(actor, call id)` → outbox id: an actor's outstanding HTTP calls.
pub const HTTP_PENDING: TableDefinition<(&str, &str), u128> = TableDefinition::new("http_pending");
/// `(tenant, key)` → [`crate::records::IdempotencyRecord`]
pub const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");
/// `(expires, tenant, key)` → (): purge expired keys without a scan.
pub const IDEM_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("idempotency_expiry");

/// tenant name → [`crate::records::TenantRecord`]
pub const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// key id → [`crate::records::KeyRecord`] (the key itself is never stored, only its hash)
pub const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// tenant → number of actors
pub const TENANT_ACTORS: TableDefinition<&str, u64> = TableDefinition::new("tenant_actors");
/// A tenant's identity → its name (for tenants whose identity is not their name).
pub const TENANT_IDS: TableDefinition<&str, &str> = TableDefinition::new("tenant_ids");
/// node settings (e.g. the admin key's hash)
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// id → actor storage key and message (a cluster's cross-partition sends; a single node
/// never leaves one, the contract has it on every backend)
pub const INBOX: TableDefinition<u64, (&str, &[u8])> = TableDefinition::new("inbox");

pub fn create_all(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(crate::history::TURN_LOG)?;
    txn.open_table(crate::history::STATE_LOG)?;
    txn.open_table(ACTORS)?;
    txn.open_table(STATES)?;
    txn.open_table(MAILBOX)?;
    txn.open_table(REQUESTS)?;
    txn.open_table(DEAD)?;
    txn.open_table(MODULES)?;
    txn.open_table(BLOBS)?;
    txn.open_table(TIMERS)?;
    txn.open_table(TIMER_INDEX)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(OUTBOX_DUE)?;
    txn.open_table(HTTP_PENDING)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(IDEM_EXPIRY)?;
    txn.open_table(TENANTS)?;
    txn.open_table(KEYS)?;
    txn.open_table(TENANT_ACTORS)?;
    txn.open_table(TENANT_IDS)?;
    txn.open_table(META)?;
    txn.open_table(INBOX)?;
    // The history tables of earlier formats (records and states apart, then one table
    // keyed by actor) are dropped: history is an aid, not state to carry over.
    for old in ["history", "history_states", "turn_history"] {
        txn.delete_table(TableDefinition::<(&str, u64), &[u8]>::new(old))?;
    }
    Ok(())
}

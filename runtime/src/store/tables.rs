//! Table definitions. Keys are chosen so that the scans the runtime needs are range
//! scans: an actor's mailbox and dead letters are contiguous under its storage key.

use redb::{TableDefinition, WriteTransaction};

/// `tenant/module/key` → [`super::ActorMeta`]
pub const ACTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("actors");
/// `tenant/module/key` → state snapshot (guest MessagePack, stored as given)
pub const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("states");
/// `(actor, seq)` → [`crate::domain::Envelope`]
pub const MAILBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("mailbox");
/// actors with unprocessed mail
pub const READY: TableDefinition<&str, ()> = TableDefinition::new("ready");
/// request id → [`super::RequestRecord`]
pub const REQUESTS: TableDefinition<u128, &[u8]> = TableDefinition::new("requests");
/// `(actor, seq)` → [`super::DeadLetter`]
pub const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
/// `tenant/name` → [`super::ModuleRecord`]
pub const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
/// digest → component bytes
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("module_bytes");

pub fn create_all(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(ACTORS)?;
    txn.open_table(STATES)?;
    txn.open_table(MAILBOX)?;
    txn.open_table(READY)?;
    txn.open_table(REQUESTS)?;
    txn.open_table(DEAD)?;
    txn.open_table(MODULES)?;
    txn.open_table(BLOBS)?;
    Ok(())
}

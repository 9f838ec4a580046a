//! The storage contract: what a backend offers the turn core ([`Tables`], the logical
//! tables inside one write transaction), what the engine reads outside a write
//! ([`Reads`]), what the writer needs to commit ([`Backend`]), how it fails ([`Error`]),
//! and how large states are written ahead in
//! slices ([`StateRef`], [`Staged`]).
//!
//! The contract is logical, not physical: a backend keeps whatever indexes it needs
//! (redb keeps `timer_index`, `outbox_due`, `idempotency_expiry` tables; PostgreSQL
//! would keep SQL indexes) and the core never sees them. The decisions — what a turn
//! writes, which messages an inline turn may skip the mailbox for, when a timer fires —
//! live in `dwell-core`, once, over this trait.
//!
//! Invariants every backend keeps (the core relies on them):
//! - Everything written through one [`Tables`] value becomes durable together or not
//!   at all, and nothing is visible to readers before it is durable.
//! - A timer is in the timer table exactly when its `(actor, name)` has that due time
//!   ([`Tables::take_timer`] removes both, [`Tables::put_timer`] writes both).
//! - An outbox entry is due at its `due_ms` and nowhere else.
//! - An actor's state is inline or staged in slices, never both.

mod backend;
pub mod faults;
pub mod memory;
mod reads;
mod tables;

pub use backend::Backend;
pub use reads::{Backlog, Pending, Reads, View};
pub use tables::{Tables, TimerKey};

use serde::{Deserialize, Serialize};

/// Why a storage operation failed. The kinds are distinct because callers act on them
/// differently: a full disk is answered `507` and clears once there is room; an
/// unavailable store `503`; a conflict or a fence means another writer won.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No room to write: nothing was written.
    #[error("the storage is full")]
    Full,
    /// An expected version did not match: another write came first.
    #[error("a concurrent write came first")]
    Conflict,
    /// This node no longer owns the partition it wrote to.
    #[error("this node no longer owns the partition")]
    Fenced,
    /// The backend cannot be reached or is being reopened; retry later.
    #[error("the storage is unavailable")]
    Unavailable,
    /// A stored record cannot be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Any other backend failure, with the backend's words.
    #[error("storage: {0}")]
    Backend(String),
}

/// States above this size are staged in slices ahead of their turn's commit, so one
/// tenant's big snapshots do not hold up the writer for everyone else.
pub const LARGE: usize = 256 << 10;
/// The size of one slice.
pub const SLICE: usize = 256 << 10;
/// At most this many bytes of slices go into one write transaction (more wait for the
/// next one).
pub const BATCH_SLICE_BYTES: usize = 256 << 10;

/// Where a large state's slices are (written ahead by [`Tables::stage_slice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    pub id: u64,
    pub len: u64,
    pub slices: u32,
}

/// A state staged for a batch of turns, and which of its turns carries it.
#[derive(Debug, Clone, Copy)]
pub struct Staged {
    pub state: StateRef,
    pub carrier: Carrier,
}

/// The turn of a batch whose (emptied) snapshot was staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The i-th mailbox turn.
    Turn(usize),
    /// The j-th inline turn.
    Inline(usize),
}

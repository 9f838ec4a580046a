//! [`Reads`]: what the engine reads outside a write, each call one consistent snapshot
//! of committed data.

use dwell_types::history::TurnRecord;
use dwell_types::records::{
    ActorMeta, DeadLetter, KeyRecord, ModuleRecord, OutboxEntry, RequestRecord, TenantRecord,
};
use dwell_types::{Envelope, UnixMs};

use crate::{Error, TimerKey};

type R<T> = Result<T, Error>;

/// What waits durably over all actors ([`Reads::backlog`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    /// Unprocessed messages in mailboxes.
    pub mailbox: u64,
    /// Pending timers.
    pub timers: u64,
    /// Outbound calls and callbacks not yet delivered (due or waiting for a retry).
    pub outbox: u64,
}

/// Up to `max` pending messages of an actor, with its meta, its state and the names of
/// its pending timers: what a runner needs for its next batch of turns.
#[derive(Debug, Clone)]
pub struct Pending {
    pub meta: ActorMeta,
    pub state: Option<Vec<u8>>,
    pub messages: Vec<(u64, Envelope)>,
    pub timers: Vec<String>,
}

/// One actor as an operator sees it.
#[derive(Debug, Clone)]
pub struct View {
    pub meta: ActorMeta,
    /// Unprocessed messages.
    pub mailbox_depth: u64,
    pub state: Option<Vec<u8>>,
    pub dead_letters: Vec<(u64, DeadLetter)>,
}

/// Reads of committed data. Each call sees one snapshot: never a part of a commit, and
/// everything committed before the call began. Actors are named by their storage key
/// (`tenant/module/key`). Lists are in key order and bounded where a table can be large.
pub trait Reads: Send + Sync {
    fn actor(&self, key: &str) -> R<Option<ActorMeta>>;
    fn pending(&self, key: &str, max: usize) -> R<Option<Pending>>;
    fn view(&self, key: &str, dead_max: usize) -> R<Option<View>>;
    fn request(&self, id: u128) -> R<Option<RequestRecord>>;
    /// Up to `max` requests with ids above `after` (from the first if `None`), in id
    /// order.
    fn requests(&self, after: Option<u128>, max: usize) -> R<Vec<(u128, RequestRecord)>>;
    /// Up to `max` actors whose storage key starts with `prefix` and sorts after
    /// `after`, in key order, with their meta.
    fn actors(&self, prefix: &str, after: Option<&str>, max: usize) -> R<Vec<(String, ActorMeta)>>;
    /// Up to `max` of an actor's turn records with a seq below `before` (all if
    /// `None`), newest first.
    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>>;
    /// The state kept with an actor's record `seq`.
    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>>;
    /// Modules whose key (`tenant-id/name`) starts with `prefix`: `(key, record)`.
    fn modules(&self, prefix: &str) -> R<Vec<(String, ModuleRecord)>>;
    fn module_bytes(&self, digest: &str) -> R<Option<Vec<u8>>>;
    /// Every tenant, by name.
    fn tenants(&self) -> R<Vec<(String, TenantRecord)>>;
    /// Every API key, by id.
    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>>;
    fn meta(&self, key: &str) -> R<Option<Vec<u8>>>;
    /// Meta keys starting with `prefix`.
    fn meta_keys(&self, prefix: &str) -> R<Vec<String>>;
    /// Actors of one tenant (by id).
    fn tenant_actor_count(&self, tenant: &str) -> R<u64>;
    /// Actors of every tenant.
    fn actor_total(&self) -> R<u64>;
    /// What waits, durably, over every actor: for the metrics.
    fn backlog(&self) -> R<Backlog>;
    /// Storage keys of the actors with unprocessed mail.
    fn ready_actors(&self) -> R<Vec<String>>;
    fn next_timer_due(&self) -> R<Option<UnixMs>>;
    /// Pending timers after `after` (all if `None`) and due at or before `until`, at
    /// most `max`, in due order, with their payloads.
    fn timers_after(
        &self,
        after: Option<&TimerKey>,
        until: UnixMs,
        max: usize,
    ) -> R<Vec<(TimerKey, Vec<u8>)>>;
    /// An actor's pending timers: `(name, due)`, at most 1000.
    fn timers_of(&self, key: &str) -> R<Vec<(String, UnixMs)>>;
    /// Outbox deliveries due at or before `now` (at most `max`), earliest first.
    fn outbox_due(&self, now: UnixMs, max: usize) -> R<Vec<(u128, OutboxEntry)>>;
    fn next_outbox_due(&self) -> R<Option<UnixMs>>;
    /// An actor's outstanding outbound HTTP calls, at most 1000.
    fn http_pending_of(&self, key: &str) -> R<Vec<OutboxEntry>>;

    /// Up to `max` inbox messages with ids above `after` (from the first if `None`):
    /// `(id, actor storage key)`, in id order.
    fn inbox(&self, after: Option<u64>, max: usize) -> R<Vec<(u64, String)>>;

    /// Readiness after a write failed for lack of room ([`crate::Backend::set_full`]):
    /// `Err(Error::Full)` while there is still none. A backend that cannot tell answers
    /// `Ok` and lets the next write say.
    fn room(&self) -> R<()> {
        Ok(())
    }
}

//! [`Tables`]: the logical tables of one write transaction, typed.

use dwell_types::UnixMs;
use dwell_types::history::{Retention, TurnRecord};
use dwell_types::records::{
    ActorMeta, DeadLetter, IdempotencyRecord, KeyRecord, ModuleRecord, OutboxEntry, RequestRecord,
    TenantRecord,
};
use dwell_types::{Envelope, records::PurgeJob};

use crate::{Error, StateRef};

/// A timer's key: `(due, actor storage key, name)`.
pub type TimerKey = (UnixMs, String, String);

type R<T> = Result<T, Error>;

/// The logical tables as one write transaction sees them: its own writes are visible to
/// its later reads. Actors are named by their storage key (`tenant/module/key`), tenants
/// by their identity unless a method says "name". Scans are in key order and bounded by
/// `max` where the table can be large.
pub trait Tables {
    /// A hint at the start of a batch: the actors and mailbox messages (actor, seq) it is
    /// about to read. A backend that pays a round trip per read loads them at once;
    /// reads are correct without it, and the default does nothing.
    fn prefetch(&self, actors: &[&str], mail: &[(&str, u64)]) -> R<()> {
        let _ = (actors, mail);
        Ok(())
    }

    // --- actors: storage key → meta ---
    fn actor(&self, key: &str) -> R<Option<ActorMeta>>;
    fn put_actor(&mut self, key: &str, meta: &ActorMeta) -> R<()>;
    fn remove_actor(&mut self, key: &str) -> R<()>;
    /// Up to `max` actor keys starting with `prefix`, in order.
    fn actor_keys(&self, prefix: &str, max: usize) -> R<Vec<String>>;

    // --- states ---
    /// The actor's state, inline or assembled from its slices.
    fn state(&self, key: &str) -> R<Option<Vec<u8>>>;
    /// The actor's state is `state` (any slices it had are dropped).
    fn put_state(&mut self, key: &str, state: &[u8]) -> R<()>;
    /// The actor's state is the staged slices `r` (an inline state, and slices it had
    /// before, are dropped; `r` is no longer staged).
    fn put_state_ref(&mut self, key: &str, r: StateRef) -> R<()>;
    /// The actor has no state.
    fn remove_state(&mut self, key: &str) -> R<()>;
    /// Slice `index` of the large state `id`, written ahead of the turn that uses it.
    fn stage_slice(&mut self, id: u64, index: u32, bytes: &[u8]) -> R<()>;
    /// Drop the staged slices of `id` (a no-op once an actor points at them).
    fn unstage(&mut self, id: u64) -> R<()>;

    // --- mailbox: (actor, seq) → envelope ---
    fn last_seq(&self, key: &str) -> R<Option<u64>>;
    fn has_mail(&self, key: &str) -> R<bool>;
    fn put_mail(&mut self, key: &str, seq: u64, env: &Envelope) -> R<()>;
    fn take_mail(&mut self, key: &str, seq: u64) -> R<Option<Envelope>>;
    /// Every message in the actor's mailbox, in order.
    fn mail(&self, key: &str) -> R<Vec<(u64, Envelope)>>;
    fn clear_mail(&mut self, key: &str) -> R<()>;

    // --- dead letters: (actor, seq) → dead letter ---
    fn put_dead(&mut self, key: &str, seq: u64, dl: &DeadLetter) -> R<()>;
    fn take_dead(&mut self, key: &str, seq: u64) -> R<Option<DeadLetter>>;
    fn clear_dead(&mut self, key: &str) -> R<()>;

    // --- turn history: the actor's recent turn records and the states after them ---
    /// Record turn `seq` of the actor and, when given, the state after it; records older
    /// than the last `keep.turns` and states older than the last `keep.states` turns
    /// go (at once, or later by a sweep that never shows them again). `meta` is the
    /// actor's record, written by the caller after this call: a backend may keep where
    /// the history lies in it (`meta.history`).
    fn put_history(
        &mut self,
        key: &str,
        meta: &mut ActorMeta,
        seq: u64,
        rec: &TurnRecord,
        state: Option<&[u8]>,
        keep: Retention,
    ) -> R<()>;
    /// Up to `max` of the actor's records with a seq below `before` (all if `None`),
    /// newest first.
    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>>;
    /// The state kept with record `seq`.
    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>>;
    /// Forget the actor's whole history (before its record is removed).
    fn clear_history(&mut self, key: &str) -> R<()>;

    // --- inbox: messages for actors another node runs (a cluster's cross-partition
    // sends), each taken by the actor's owner in the transaction that delivers it ---
    /// Leave `env` for the actor `key` in the inbox.
    fn put_inbox(&mut self, key: &str, env: &Envelope) -> R<()>;
    /// Take inbox message `id`: the actor it is for and the message (`None` if another
    /// transaction took it).
    fn take_inbox(&mut self, id: u64) -> R<Option<(String, Envelope)>>;

    // --- requests: id → record ---
    fn request(&self, id: u128) -> R<Option<RequestRecord>>;
    fn put_request(&mut self, id: u128, rec: &RequestRecord) -> R<()>;
    fn remove_request(&mut self, id: u128) -> R<()>;
    /// Up to `max` requests with ids from `cursor` on, in order.
    fn requests_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, RequestRecord)>>;

    // --- modules: `tenant/name` → versions; digest → bytes ---
    fn module(&self, key: &str) -> R<Option<ModuleRecord>>;
    fn put_module(&mut self, key: &str, rec: &ModuleRecord) -> R<()>;
    /// `true` if there was one.
    fn remove_module(&mut self, key: &str) -> R<bool>;
    fn module_keys(&self, prefix: &str) -> R<Vec<String>>;
    fn has_blob(&self, digest: &str) -> R<bool>;
    fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> R<()>;

    // --- timers: (actor, name) → due and payload ---
    fn timer_due(&self, key: &str, name: &str) -> R<Option<UnixMs>>;
    /// Whether the timer `(due, key, name)` is pending.
    fn timer_pending(&self, due: UnixMs, key: &str, name: &str) -> R<bool>;
    /// Set a timer the actor does not have (the caller takes the old one first).
    fn put_timer(&mut self, due: UnixMs, key: &str, name: &str, payload: &[u8]) -> R<()>;
    /// Remove the timer `(due, key, name)` if it is pending; its payload.
    fn take_timer(&mut self, due: UnixMs, key: &str, name: &str) -> R<Option<Vec<u8>>>;
    /// The names of the actor's pending timers.
    fn timer_names(&self, key: &str) -> R<Vec<String>>;
    /// Up to `max` timers due at or before `now`, earliest first.
    fn due_timers(&self, now: UnixMs, max: usize) -> R<Vec<TimerKey>>;

    // --- outbox: id → delivery, due at its `due_ms` ---
    fn outbox(&self, id: u128) -> R<Option<OutboxEntry>>;
    /// Add an entry the outbox does not hold (the caller takes the old one first).
    fn put_outbox(&mut self, id: u128, entry: &OutboxEntry) -> R<()>;
    fn take_outbox(&mut self, id: u128) -> R<Option<OutboxEntry>>;
    /// Up to `max` entries with ids from `cursor` on, in order.
    fn outbox_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, OutboxEntry)>>;
    /// `(actor, call id)` → the outbox id of the actor's outstanding HTTP call.
    fn http_pending(&self, key: &str, call: &str) -> R<Option<u128>>;
    fn put_http_pending(&mut self, key: &str, call: &str, id: u128) -> R<()>;
    fn remove_http_pending(&mut self, key: &str, call: &str) -> R<()>;
    fn clear_http_pending(&mut self, key: &str) -> R<()>;

    // --- idempotency keys: (tenant, key) → record, forgotten after `expires_ms` ---
    fn idempotency(&self, tenant: &str, key: &str) -> R<Option<IdempotencyRecord>>;
    /// Store a key's record (replacing one that expired).
    fn put_idempotency(&mut self, tenant: &str, key: &str, rec: &IdempotencyRecord) -> R<()>;
    fn remove_idempotency(&mut self, tenant: &str, key: &str) -> R<()>;
    /// Up to `max` `(expires, tenant, key)` expiring before `before`, earliest first, one
    /// per stored key (files from before that rule may hold stale entries too: the core
    /// compares with the record).
    fn expiring(&self, before: UnixMs, max: usize) -> R<Vec<(UnixMs, String, String)>>;
    /// Forget the expiry entry `(expires, tenant, key)` returned by [`Tables::expiring`].
    fn forget_expiry(&mut self, expires: UnixMs, tenant: &str, key: &str) -> R<()>;
    /// Up to `max` of a tenant's keys, in order.
    fn idempotency_keys(&self, tenant: &str, max: usize) -> R<Vec<(String, IdempotencyRecord)>>;

    // --- tenants (by name), their identities, actor counts and API keys ---
    fn tenant(&self, name: &str) -> R<Option<TenantRecord>>;
    fn put_tenant(&mut self, name: &str, rec: &TenantRecord) -> R<()>;
    fn take_tenant(&mut self, name: &str) -> R<Option<TenantRecord>>;
    /// The name of the tenant whose identity is `id`, if it is not `id` itself.
    fn tenant_name(&self, id: &str) -> R<Option<String>>;
    fn put_tenant_name(&mut self, id: &str, name: &str) -> R<()>;
    fn remove_tenant_name(&mut self, id: &str) -> R<()>;
    fn actor_count(&self, tenant: &str) -> R<u64>;
    fn put_actor_count(&mut self, tenant: &str, count: u64) -> R<()>;
    fn remove_actor_count(&mut self, tenant: &str) -> R<()>;
    fn api_key(&self, id: &str) -> R<Option<KeyRecord>>;
    fn put_api_key(&mut self, id: &str, rec: &KeyRecord) -> R<()>;
    fn remove_api_key(&mut self, id: &str) -> R<()>;
    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>>;

    // --- node settings and background jobs ---
    fn meta(&self, key: &str) -> R<Option<Vec<u8>>>;
    fn put_meta(&mut self, key: &str, value: &[u8]) -> R<()>;
    fn remove_meta(&mut self, key: &str) -> R<()>;
    fn purge_job(&self, key: &str) -> R<Option<PurgeJob>>;
    fn put_purge_job(&mut self, key: &str, job: &PurgeJob) -> R<()>;
}

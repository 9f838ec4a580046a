//! [`MemTables`]: the contract in ordered maps, in memory. It is the reference the
//! conformance suite and the model-based test compare every real backend with (the
//! simplest thing that can be right), and lets the turn core be tested without a disk.
//! Nothing durable: a transaction is a clone that replaces the original on commit.

use std::collections::BTreeMap;

use dwell_types::history::{Retention, TurnRecord};
use dwell_types::records::{
    ActorMeta, DeadLetter, IdempotencyRecord, KeyRecord, ModuleRecord, OutboxEntry, PurgeJob,
    RequestRecord, TenantRecord,
};
use dwell_types::{Envelope, UnixMs};

use crate::{Error, StateRef, Tables, TimerKey};

type R<T> = Result<T, Error>;

/// A key of two strings.
type Pair = (String, String);

/// Every logical table, as ordered maps.
#[derive(Debug, Clone, Default)]
pub struct MemTables {
    pub actors: BTreeMap<String, ActorMeta>,
    pub states: BTreeMap<String, Vec<u8>>,
    pub state_refs: BTreeMap<String, StateRef>,
    pub slices: BTreeMap<(u64, u32), Vec<u8>>,
    pub staged: BTreeMap<u64, u32>,
    pub mailbox: BTreeMap<(String, u64), Envelope>,
    pub dead: BTreeMap<(String, u64), DeadLetter>,
    pub requests: BTreeMap<u128, RequestRecord>,
    pub modules: BTreeMap<String, ModuleRecord>,
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// `(actor, name)` → `(due, payload)`.
    pub timers: BTreeMap<Pair, (UnixMs, Vec<u8>)>,
    pub outbox: BTreeMap<u128, OutboxEntry>,
    pub http_pending: BTreeMap<Pair, u128>,
    pub idempotency: BTreeMap<Pair, IdempotencyRecord>,
    pub tenants: BTreeMap<String, TenantRecord>,
    pub tenant_names: BTreeMap<String, String>,
    pub actor_counts: BTreeMap<String, u64>,
    pub api_keys: BTreeMap<String, KeyRecord>,
    pub meta: BTreeMap<String, Vec<u8>>,
    pub purge_jobs: BTreeMap<String, PurgeJob>,
    pub history: BTreeMap<(String, u64), TurnRecord>,
    pub history_states: BTreeMap<(String, u64), Vec<u8>>,
    pub inbox: BTreeMap<u64, (String, Envelope)>,
}

fn pair(a: &str, b: &str) -> Pair {
    (a.to_owned(), b.to_owned())
}

fn seq_range(key: &str) -> std::ops::RangeInclusive<(String, u64)> {
    (key.to_owned(), 0)..=(key.to_owned(), u64::MAX)
}

impl MemTables {
    fn drop_slices(&mut self, id: u64, n: u32) {
        for i in 0..n {
            self.slices.remove(&(id, i));
        }
    }

    fn clear_ref(&mut self, key: &str) {
        if let Some(old) = self.state_refs.remove(key) {
            self.drop_slices(old.id, old.slices);
        }
    }

    fn assembled(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(s) = self.states.get(key) {
            return Some(s.clone());
        }
        let r = self.state_refs.get(key)?;
        let mut out = Vec::with_capacity(r.len as usize);
        for i in 0..r.slices {
            out.extend_from_slice(self.slices.get(&(r.id, i))?);
        }
        Some(out)
    }
}

impl Tables for MemTables {
    fn actor(&self, key: &str) -> R<Option<ActorMeta>> {
        Ok(self.actors.get(key).cloned())
    }
    fn put_actor(&mut self, key: &str, meta: &ActorMeta) -> R<()> {
        self.actors.insert(key.to_owned(), meta.clone());
        Ok(())
    }
    fn remove_actor(&mut self, key: &str) -> R<()> {
        self.actors.remove(key);
        Ok(())
    }
    fn actor_keys(&self, prefix: &str, max: usize) -> R<Vec<String>> {
        Ok(self
            .actors
            .range(prefix.to_owned()..)
            .map(|(k, _)| k.clone())
            .take_while(|k| k.starts_with(prefix))
            .take(max)
            .collect())
    }

    fn state(&self, key: &str) -> R<Option<Vec<u8>>> {
        Ok(self.assembled(key))
    }
    fn put_state(&mut self, key: &str, state: &[u8]) -> R<()> {
        self.states.insert(key.to_owned(), state.to_vec());
        self.clear_ref(key);
        Ok(())
    }
    fn put_state_ref(&mut self, key: &str, r: StateRef) -> R<()> {
        self.states.remove(key);
        self.staged.remove(&r.id);
        if let Some(old) = self.state_refs.insert(key.to_owned(), r)
            && old.id != r.id
        {
            self.drop_slices(old.id, old.slices);
        }
        Ok(())
    }
    fn remove_state(&mut self, key: &str) -> R<()> {
        self.states.remove(key);
        self.clear_ref(key);
        Ok(())
    }
    fn stage_slice(&mut self, id: u64, index: u32, bytes: &[u8]) -> R<()> {
        self.slices.insert((id, index), bytes.to_vec());
        let n = self.staged.entry(id).or_default();
        *n = (*n).max(index + 1);
        Ok(())
    }
    fn unstage(&mut self, id: u64) -> R<()> {
        if let Some(n) = self.staged.remove(&id) {
            self.drop_slices(id, n);
        }
        Ok(())
    }

    fn last_seq(&self, key: &str) -> R<Option<u64>> {
        Ok(self
            .mailbox
            .range(seq_range(key))
            .next_back()
            .map(|(k, _)| k.1))
    }
    fn has_mail(&self, key: &str) -> R<bool> {
        Ok(self.mailbox.range(seq_range(key)).next().is_some())
    }
    fn put_mail(&mut self, key: &str, seq: u64, env: &Envelope) -> R<()> {
        self.mailbox.insert((key.to_owned(), seq), env.clone());
        Ok(())
    }
    fn take_mail(&mut self, key: &str, seq: u64) -> R<Option<Envelope>> {
        Ok(self.mailbox.remove(&(key.to_owned(), seq)))
    }
    fn mail(&self, key: &str) -> R<Vec<(u64, Envelope)>> {
        Ok(self
            .mailbox
            .range(seq_range(key))
            .map(|(k, v)| (k.1, v.clone()))
            .collect())
    }
    fn clear_mail(&mut self, key: &str) -> R<()> {
        let seqs: Vec<_> = self
            .mailbox
            .range(seq_range(key))
            .map(|(k, _)| k.clone())
            .collect();
        for k in seqs {
            self.mailbox.remove(&k);
        }
        Ok(())
    }

    fn put_inbox(&mut self, key: &str, env: &Envelope) -> R<()> {
        let id = self.inbox.last_key_value().map_or(1, |(id, _)| id + 1);
        self.inbox.insert(id, (key.to_owned(), env.clone()));
        Ok(())
    }
    fn take_inbox(&mut self, id: u64) -> R<Option<(String, Envelope)>> {
        Ok(self.inbox.remove(&id))
    }
    fn put_dead(&mut self, key: &str, seq: u64, dl: &DeadLetter) -> R<()> {
        self.dead.insert((key.to_owned(), seq), dl.clone());
        Ok(())
    }
    fn take_dead(&mut self, key: &str, seq: u64) -> R<Option<DeadLetter>> {
        Ok(self.dead.remove(&(key.to_owned(), seq)))
    }
    fn clear_dead(&mut self, key: &str) -> R<()> {
        let seqs: Vec<_> = self
            .dead
            .range(seq_range(key))
            .map(|(k, _)| k.clone())
            .collect();
        for k in seqs {
            self.dead.remove(&k);
        }
        Ok(())
    }

    fn put_history(
        &mut self,
        key: &str,
        _meta: &mut ActorMeta,
        seq: u64,
        rec: &TurnRecord,
        state: Option<&[u8]>,
        keep: Retention,
    ) -> R<()> {
        let at = |seq| (key.to_owned(), seq);
        self.history.insert(at(seq), rec.clone());
        if let Some(state) = state {
            self.history_states.insert(at(seq), state.to_vec());
        }
        if let Some(old) = seq.checked_sub(keep.states) {
            self.history_states.remove(&at(old));
        }
        if let Some(old) = seq.checked_sub(keep.turns) {
            self.history.remove(&at(old));
            self.history_states.remove(&at(old));
        }
        Ok(())
    }
    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>> {
        let end = before.unwrap_or(u64::MAX);
        Ok(self
            .history
            .range((key.to_owned(), 0)..(key.to_owned(), end))
            .rev()
            .take(max)
            .map(|(k, v)| (k.1, v.clone()))
            .collect())
    }
    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>> {
        Ok(self.history_states.get(&(key.to_owned(), seq)).cloned())
    }
    fn clear_history(&mut self, key: &str) -> R<()> {
        let seqs: Vec<_> = self
            .history
            .range(seq_range(key))
            .map(|(k, _)| k.clone())
            .collect();
        for k in seqs {
            self.history.remove(&k);
            self.history_states.remove(&k);
        }
        Ok(())
    }

    fn request(&self, id: u128) -> R<Option<RequestRecord>> {
        Ok(self.requests.get(&id).cloned())
    }
    fn put_request(&mut self, id: u128, rec: &RequestRecord) -> R<()> {
        self.requests.insert(id, rec.clone());
        Ok(())
    }
    fn remove_request(&mut self, id: u128) -> R<()> {
        self.requests.remove(&id);
        Ok(())
    }
    fn requests_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, RequestRecord)>> {
        Ok(self
            .requests
            .range(cursor..)
            .take(max)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn module(&self, key: &str) -> R<Option<ModuleRecord>> {
        Ok(self.modules.get(key).cloned())
    }
    fn put_module(&mut self, key: &str, rec: &ModuleRecord) -> R<()> {
        self.modules.insert(key.to_owned(), rec.clone());
        Ok(())
    }
    fn remove_module(&mut self, key: &str) -> R<bool> {
        Ok(self.modules.remove(key).is_some())
    }
    fn module_keys(&self, prefix: &str) -> R<Vec<String>> {
        Ok(self
            .modules
            .range(prefix.to_owned()..)
            .map(|(k, _)| k.clone())
            .take_while(|k| k.starts_with(prefix))
            .collect())
    }
    fn has_blob(&self, digest: &str) -> R<bool> {
        Ok(self.blobs.contains_key(digest))
    }
    fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> R<()> {
        self.blobs.insert(digest.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn timer_due(&self, key: &str, name: &str) -> R<Option<UnixMs>> {
        Ok(self.timers.get(&pair(key, name)).map(|t| t.0))
    }
    fn timer_pending(&self, due: UnixMs, key: &str, name: &str) -> R<bool> {
        Ok(self
            .timers
            .get(&pair(key, name))
            .is_some_and(|t| t.0 == due))
    }
    fn put_timer(&mut self, due: UnixMs, key: &str, name: &str, payload: &[u8]) -> R<()> {
        self.timers.insert(pair(key, name), (due, payload.to_vec()));
        Ok(())
    }
    fn take_timer(&mut self, due: UnixMs, key: &str, name: &str) -> R<Option<Vec<u8>>> {
        if !self.timer_pending(due, key, name)? {
            return Ok(None);
        }
        Ok(self.timers.remove(&pair(key, name)).map(|t| t.1))
    }
    fn timer_names(&self, key: &str) -> R<Vec<String>> {
        Ok(self
            .timers
            .range(pair(key, "")..)
            .take_while(|(k, _)| k.0 == key)
            .map(|(k, _)| k.1.clone())
            .collect())
    }
    fn due_timers(&self, now: UnixMs, max: usize) -> R<Vec<TimerKey>> {
        let mut due: Vec<TimerKey> = self
            .timers
            .iter()
            .filter(|(_, t)| t.0 <= now)
            .map(|(k, t)| (t.0, k.0.clone(), k.1.clone()))
            .collect();
        due.sort();
        due.truncate(max);
        Ok(due)
    }

    fn outbox(&self, id: u128) -> R<Option<OutboxEntry>> {
        Ok(self.outbox.get(&id).cloned())
    }
    fn put_outbox(&mut self, id: u128, entry: &OutboxEntry) -> R<()> {
        self.outbox.insert(id, entry.clone());
        Ok(())
    }
    fn take_outbox(&mut self, id: u128) -> R<Option<OutboxEntry>> {
        Ok(self.outbox.remove(&id))
    }
    fn outbox_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, OutboxEntry)>> {
        Ok(self
            .outbox
            .range(cursor..)
            .take(max)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }
    fn http_pending(&self, key: &str, call: &str) -> R<Option<u128>> {
        Ok(self.http_pending.get(&pair(key, call)).copied())
    }
    fn put_http_pending(&mut self, key: &str, call: &str, id: u128) -> R<()> {
        self.http_pending.insert(pair(key, call), id);
        Ok(())
    }
    fn remove_http_pending(&mut self, key: &str, call: &str) -> R<()> {
        self.http_pending.remove(&pair(key, call));
        Ok(())
    }
    fn clear_http_pending(&mut self, key: &str) -> R<()> {
        self.http_pending.retain(|k, _| k.0 != key);
        Ok(())
    }

    fn idempotency(&self, tenant: &str, key: &str) -> R<Option<IdempotencyRecord>> {
        Ok(self.idempotency.get(&pair(tenant, key)).cloned())
    }
    fn put_idempotency(&mut self, tenant: &str, key: &str, rec: &IdempotencyRecord) -> R<()> {
        self.idempotency.insert(pair(tenant, key), rec.clone());
        Ok(())
    }
    fn remove_idempotency(&mut self, tenant: &str, key: &str) -> R<()> {
        self.idempotency.remove(&pair(tenant, key));
        Ok(())
    }
    fn expiring(&self, before: UnixMs, max: usize) -> R<Vec<(UnixMs, String, String)>> {
        let mut out: Vec<_> = self
            .idempotency
            .iter()
            .filter(|(_, r)| r.expires_ms < before)
            .map(|(k, r)| (r.expires_ms, k.0.clone(), k.1.clone()))
            .collect();
        out.sort();
        out.truncate(max);
        Ok(out)
    }
    fn forget_expiry(&mut self, _: UnixMs, _: &str, _: &str) -> R<()> {
        // No separate expiry index: the record is the entry.
        Ok(())
    }
    fn idempotency_keys(&self, tenant: &str, max: usize) -> R<Vec<(String, IdempotencyRecord)>> {
        Ok(self
            .idempotency
            .range(pair(tenant, "")..)
            .take_while(|(k, _)| k.0 == tenant)
            .take(max)
            .map(|(k, v)| (k.1.clone(), v.clone()))
            .collect())
    }

    fn tenant(&self, name: &str) -> R<Option<TenantRecord>> {
        Ok(self.tenants.get(name).cloned())
    }
    fn put_tenant(&mut self, name: &str, rec: &TenantRecord) -> R<()> {
        self.tenants.insert(name.to_owned(), rec.clone());
        Ok(())
    }
    fn take_tenant(&mut self, name: &str) -> R<Option<TenantRecord>> {
        Ok(self.tenants.remove(name))
    }
    fn tenant_name(&self, id: &str) -> R<Option<String>> {
        Ok(self.tenant_names.get(id).cloned())
    }
    fn put_tenant_name(&mut self, id: &str, name: &str) -> R<()> {
        self.tenant_names.insert(id.to_owned(), name.to_owned());
        Ok(())
    }
    fn remove_tenant_name(&mut self, id: &str) -> R<()> {
        self.tenant_names.remove(id);
        Ok(())
    }
    fn actor_count(&self, tenant: &str) -> R<u64> {
        Ok(self.actor_counts.get(tenant).copied().unwrap_or(0))
    }
    fn put_actor_count(&mut self, tenant: &str, count: u64) -> R<()> {
        self.actor_counts.insert(tenant.to_owned(), count);
        Ok(())
    }
    fn remove_actor_count(&mut self, tenant: &str) -> R<()> {
        self.actor_counts.remove(tenant);
        Ok(())
    }
    fn api_key(&self, id: &str) -> R<Option<KeyRecord>> {
        Ok(self.api_keys.get(id).cloned())
    }
    fn put_api_key(&mut self, id: &str, rec: &KeyRecord) -> R<()> {
        self.api_keys.insert(id.to_owned(), rec.clone());
        Ok(())
    }
    fn remove_api_key(&mut self, id: &str) -> R<()> {
        self.api_keys.remove(id);
        Ok(())
    }
    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>> {
        Ok(self
            .api_keys
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn meta(&self, key: &str) -> R<Option<Vec<u8>>> {
        Ok(self.meta.get(key).cloned())
    }
    fn put_meta(&mut self, key: &str, value: &[u8]) -> R<()> {
        self.purge_jobs.remove(key);
        self.meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    fn remove_meta(&mut self, key: &str) -> R<()> {
        self.purge_jobs.remove(key);
        self.meta.remove(key);
        Ok(())
    }
    fn purge_job(&self, key: &str) -> R<Option<PurgeJob>> {
        Ok(self.purge_jobs.get(key).cloned())
    }
    fn put_purge_job(&mut self, key: &str, job: &PurgeJob) -> R<()> {
        self.meta.remove(key);
        self.purge_jobs.insert(key.to_owned(), job.clone());
        Ok(())
    }
}

//! [`Faulty`]: any backend's [`Tables`] with faults put in on purpose, for tests of what
//! the rest of the node does when storage fails: every write of a transaction fails
//! with the armed [`Error`] (so the transaction is abandoned and nothing of it is
//! acknowledged) until the fault is lifted. Reads pass through.

use std::sync::Mutex;

use dwell_types::history::{Retention, TurnRecord};
use dwell_types::records::{
    ActorMeta, DeadLetter, IdempotencyRecord, KeyRecord, ModuleRecord, OutboxEntry, PurgeJob,
    RequestRecord, TenantRecord,
};
use dwell_types::{Envelope, UnixMs};

use crate::{Error, StateRef, Tables, TimerKey};

type R<T> = Result<T, Error>;

/// The switch shared by a test and the backend it wraps.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<Option<Error>>,
    /// Writes refused since the fault was armed.
    refused: std::sync::atomic::AtomicU64,
}

impl Faults {
    /// Every write fails with `error` from now on.
    pub fn fail_writes(&self, error: Error) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// Writes succeed again.
    pub fn lift(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many writes were refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn check(&self) -> R<()> {
        match &*self.armed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(e.clone())
            }
            None => Ok(()),
        }
    }
}

/// `inner` with [`Faults`] in front of every write.
pub struct Faulty<'a, T: Tables> {
    pub inner: &'a mut T,
    pub faults: &'a Faults,
}

impl<T: Tables> Tables for Faulty<'_, T> {
    fn prefetch(&self, actors: &[&str], mail: &[(&str, u64)]) -> R<()> {
        self.inner.prefetch(actors, mail)
    }

    fn actor(&self, key: &str) -> R<Option<ActorMeta>> {
        self.inner.actor(key)
    }

    fn put_actor(&mut self, key: &str, meta: &ActorMeta) -> R<()> {
        self.faults.check()?;
        self.inner.put_actor(key, meta)
    }

    fn remove_actor(&mut self, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_actor(key)
    }

    fn actor_keys(&self, prefix: &str, max: usize) -> R<Vec<String>> {
        self.inner.actor_keys(prefix, max)
    }

    fn put_inbox(&mut self, key: &str, env: &Envelope) -> R<()> {
        self.faults.check()?;
        self.inner.put_inbox(key, env)
    }

    fn take_inbox(&mut self, id: u64) -> R<Option<(String, Envelope)>> {
        self.faults.check()?;
        self.inner.take_inbox(id)
    }

    fn state(&self, key: &str) -> R<Option<Vec<u8>>> {
        self.inner.state(key)
    }

    fn put_state(&mut self, key: &str, state: &[u8]) -> R<()> {
        self.faults.check()?;
        self.inner.put_state(key, state)
    }

    fn put_state_ref(&mut self, key: &str, r: StateRef) -> R<()> {
        self.faults.check()?;
        self.inner.put_state_ref(key, r)
    }

    fn remove_state(&mut self, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_state(key)
    }

    fn stage_slice(&mut self, id: u64, index: u32, bytes: &[u8]) -> R<()> {
        self.faults.check()?;
        self.inner.stage_slice(id, index, bytes)
    }

    fn unstage(&mut self, id: u64) -> R<()> {
        self.faults.check()?;
        self.inner.unstage(id)
    }

    fn last_seq(&self, key: &str) -> R<Option<u64>> {
        self.inner.last_seq(key)
    }

    fn has_mail(&self, key: &str) -> R<bool> {
        self.inner.has_mail(key)
    }

    fn put_mail(&mut self, key: &str, seq: u64, env: &Envelope) -> R<()> {
        self.faults.check()?;
        self.inner.put_mail(key, seq, env)
    }

    fn take_mail(&mut self, key: &str, seq: u64) -> R<Option<Envelope>> {
        self.faults.check()?;
        self.inner.take_mail(key, seq)
    }

    fn mail(&self, key: &str) -> R<Vec<(u64, Envelope)>> {
        self.inner.mail(key)
    }

    fn clear_mail(&mut self, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.clear_mail(key)
    }

    fn put_dead(&mut self, key: &str, seq: u64, dl: &DeadLetter) -> R<()> {
        self.faults.check()?;
        self.inner.put_dead(key, seq, dl)
    }

    fn take_dead(&mut self, key: &str, seq: u64) -> R<Option<DeadLetter>> {
        self.faults.check()?;
        self.inner.take_dead(key, seq)
    }

    fn clear_dead(&mut self, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.clear_dead(key)
    }

    fn put_history(
        &mut self,
        key: &str,
        meta: &mut ActorMeta,
        seq: u64,
        rec: &TurnRecord,
        state: Option<&[u8]>,
        keep: Retention,
    ) -> R<()> {
        self.faults.check()?;
        self.inner.put_history(key, meta, seq, rec, state, keep)
    }

    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>> {
        self.inner.history(key, before, max)
    }

    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>> {
        self.inner.history_state(key, seq)
    }

    fn clear_history(&mut self, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.clear_history(key)
    }

    fn request(&self, id: u128) -> R<Option<RequestRecord>> {
        self.inner.request(id)
    }

    fn put_request(&mut self, id: u128, rec: &RequestRecord) -> R<()> {
        self.faults.check()?;
        self.inner.put_request(id, rec)
    }

    fn remove_request(&mut self, id: u128) -> R<()> {
        self.faults.check()?;
        self.inner.remove_request(id)
    }

    fn requests_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, RequestRecord)>> {
        self.inner.requests_from(cursor, max)
    }

    fn module(&self, key: &str) -> R<Option<ModuleRecord>> {
        self.inner.module(key)
    }

    fn put_module(&mut self, key: &str, rec: &ModuleRecord) -> R<()> {
        self.faults.check()?;
        self.inner.put_module(key, rec)
    }

    fn remove_module(&mut self, key: &str) -> R<bool> {
        self.faults.check()?;
        self.inner.remove_module(key)
    }

    fn module_keys(&self, prefix: &str) -> R<Vec<String>> {
        self.inner.module_keys(prefix)
    }

    fn has_blob(&self, digest: &str) -> R<bool> {
        self.inner.has_blob(digest)
    }

    fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> R<()> {
        self.faults.check()?;
        self.inner.put_blob(digest, bytes)
    }

    fn timer_due(&self, key: &str, name: &str) -> R<Option<UnixMs>> {
        self.inner.timer_due(key, name)
    }

    fn timer_pending(&self, due: UnixMs, key: &str, name: &str) -> R<bool> {
        self.inner.timer_pending(due, key, name)
    }

    fn put_timer(&mut self, due: UnixMs, key: &str, name: &str, payload: &[u8]) -> R<()> {
        self.faults.check()?;
        self.inner.put_timer(due, key, name, payload)
    }

    fn take_timer(&mut self, due: UnixMs, key: &str, name: &str) -> R<Option<Vec<u8>>> {
        self.faults.check()?;
        self.inner.take_timer(due, key, name)
    }

    fn timer_names(&self, key: &str) -> R<Vec<String>> {
        self.inner.timer_names(key)
    }

    fn due_timers(&self, now: UnixMs, max: usize) -> R<Vec<TimerKey>> {
        self.inner.due_timers(now, max)
    }

    fn outbox(&self, id: u128) -> R<Option<OutboxEntry>> {
        self.inner.outbox(id)
    }

    fn put_outbox(&mut self, id: u128, entry: &OutboxEntry) -> R<()> {
        self.faults.check()?;
        self.inner.put_outbox(id, entry)
    }

    fn take_outbox(&mut self, id: u128) -> R<Option<OutboxEntry>> {
        self.faults.check()?;
        self.inner.take_outbox(id)
    }

    fn outbox_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, OutboxEntry)>> {
        self.inner.outbox_from(cursor, max)
    }

    fn http_pending(&self, key: &str, call: &str) -> R<Option<u128>> {
        self.inner.http_pending(key, call)
    }

    fn put_http_pending(&mut self, key: &str, call: &str, id: u128) -> R<()> {
        self.faults.check()?;
        self.inner.put_http_pending(key, call, id)
    }

    fn remove_http_pending(&mut self, key: &str, call: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_http_pending(key, call)
    }

    fn clear_http_pending(&mut self, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.clear_http_pending(key)
    }

    fn idempotency(&self, tenant: &str, key: &str) -> R<Option<IdempotencyRecord>> {
        self.inner.idempotency(tenant, key)
    }

    fn put_idempotency(&mut self, tenant: &str, key: &str, rec: &IdempotencyRecord) -> R<()> {
        self.faults.check()?;
        self.inner.put_idempotency(tenant, key, rec)
    }

    fn remove_idempotency(&mut self, tenant: &str, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_idempotency(tenant, key)
    }

    fn expiring(&self, before: UnixMs, max: usize) -> R<Vec<(UnixMs, String, String)>> {
        self.inner.expiring(before, max)
    }

    fn forget_expiry(&mut self, expires: UnixMs, tenant: &str, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.forget_expiry(expires, tenant, key)
    }

    fn idempotency_keys(&self, tenant: &str, max: usize) -> R<Vec<(String, IdempotencyRecord)>> {
        self.inner.idempotency_keys(tenant, max)
    }

    fn tenant(&self, name: &str) -> R<Option<TenantRecord>> {
        self.inner.tenant(name)
    }

    fn put_tenant(&mut self, name: &str, rec: &TenantRecord) -> R<()> {
        self.faults.check()?;
        self.inner.put_tenant(name, rec)
    }

    fn take_tenant(&mut self, name: &str) -> R<Option<TenantRecord>> {
        self.faults.check()?;
        self.inner.take_tenant(name)
    }

    fn tenant_name(&self, id: &str) -> R<Option<String>> {
        self.inner.tenant_name(id)
    }

    fn put_tenant_name(&mut self, id: &str, name: &str) -> R<()> {
        self.faults.check()?;
        self.inner.put_tenant_name(id, name)
    }

    fn remove_tenant_name(&mut self, id: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_tenant_name(id)
    }

    fn actor_count(&self, tenant: &str) -> R<u64> {
        self.inner.actor_count(tenant)
    }

    fn put_actor_count(&mut self, tenant: &str, count: u64) -> R<()> {
        self.faults.check()?;
        self.inner.put_actor_count(tenant, count)
    }

    fn remove_actor_count(&mut self, tenant: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_actor_count(tenant)
    }

    fn api_key(&self, id: &str) -> R<Option<KeyRecord>> {
        self.inner.api_key(id)
    }

    fn put_api_key(&mut self, id: &str, rec: &KeyRecord) -> R<()> {
        self.faults.check()?;
        self.inner.put_api_key(id, rec)
    }

    fn remove_api_key(&mut self, id: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_api_key(id)
    }

    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>> {
        self.inner.api_keys()
    }

    fn meta(&self, key: &str) -> R<Option<Vec<u8>>> {
        self.inner.meta(key)
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> R<()> {
        self.faults.check()?;
        self.inner.put_meta(key, value)
    }

    fn remove_meta(&mut self, key: &str) -> R<()> {
        self.faults.check()?;
        self.inner.remove_meta(key)
    }

    fn purge_job(&self, key: &str) -> R<Option<PurgeJob>> {
        self.inner.purge_job(key)
    }

    fn put_purge_job(&mut self, key: &str, job: &PurgeJob) -> R<()> {
        self.faults.check()?;
        self.inner.put_purge_job(key, job)
    }
}

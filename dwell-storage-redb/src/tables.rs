//! The storage contract ([`dwell_storage::Tables`]) on redb: the open tables of one
//! write transaction. Records are encoded here ([`records`]); the secondary tables
//! (`timer_index`, `outbox_due`, `idempotency_expiry`) are kept in step here, so the
//! turn core never sees them.
//! Long because it is the whole contract on redb: one short method per table operation.

use dwell_storage::{Error, StateRef, Tables, TimerKey};

use crate::storage_error;
use redb::{ReadableTable, Table, WriteTransaction};

use crate::large::LargeTables;
use crate::records::{
    self, ActorMeta, DeadLetter, IdempotencyRecord, KeyRecord, ModuleRecord, OutboxEntry, PurgeJob,
    RequestRecord, TenantRecord,
};
use crate::schema::*;
use dwell_types::history::{Retention, TurnRecord};

use crate::history::{self, Log, STATE_LOG, TURN_LOG};
use dwell_types::{Envelope, UnixMs};

type R<T> = Result<T, Error>;

/// `?` for redb results inside the contract.
trait Redb<T> {
    fn st(self) -> R<T>;
}

impl<T, E: Into<redb::Error>> Redb<T> for Result<T, E> {
    fn st(self) -> R<T> {
        self.map_err(storage_error)
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> R<T> {
    Ok(records::decode(bytes)?)
}

/// The record a lookup found, decoded.
fn record<T: serde::de::DeserializeOwned>(
    found: Option<redb::AccessGuard<'_, &'static [u8]>>,
) -> R<Option<T>> {
    found.map(|v| decode(v.value())).transpose()
}

/// Timer names are `[A-Za-z0-9_.:-]`, all below this byte: the end of an actor's range.
const NAME_END: &str = "\u{7f}";

/// The open tables of one redb write transaction.
pub struct RedbTables<'t> {
    /// For the tables opened only when used (the inbox).
    txn: &'t WriteTransaction,
    actors: Table<'t, &'static str, &'static [u8]>,
    states: Table<'t, &'static str, &'static [u8]>,
    mailbox: Table<'t, (&'static str, u64), &'static [u8]>,
    requests: Table<'t, u128, &'static [u8]>,
    dead: Table<'t, (&'static str, u64), &'static [u8]>,
    modules: Table<'t, &'static str, &'static [u8]>,
    blobs: Table<'t, &'static str, &'static [u8]>,
    timers: Table<'t, (u64, &'static str, &'static str), &'static [u8]>,
    timer_index: Table<'t, (&'static str, &'static str), u64>,
    outbox: Table<'t, u128, &'static [u8]>,
    outbox_due: Table<'t, (u64, u128), ()>,
    http_pending: Table<'t, (&'static str, &'static str), u128>,
    idem: Table<'t, (&'static str, &'static str), &'static [u8]>,
    idem_expiry: Table<'t, (u64, &'static str, &'static str), ()>,
    tenants: Table<'t, &'static str, &'static [u8]>,
    keys: Table<'t, &'static str, &'static [u8]>,
    tenant_actors: Table<'t, &'static str, u64>,
    tenant_ids: Table<'t, &'static str, &'static str>,
    meta_table: Table<'t, &'static str, &'static [u8]>,
    turn_log: Log<'t>,
    state_log: Log<'t>,
    large: LargeTables<'t>,
}

impl<'t> RedbTables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> R<Self> {
        Ok(RedbTables {
            txn,
            actors: txn.open_table(ACTORS).st()?,
            states: txn.open_table(STATES).st()?,
            mailbox: txn.open_table(MAILBOX).st()?,
            requests: txn.open_table(REQUESTS).st()?,
            dead: txn.open_table(DEAD).st()?,
            modules: txn.open_table(MODULES).st()?,
            blobs: txn.open_table(BLOBS).st()?,
            timers: txn.open_table(TIMERS).st()?,
            timer_index: txn.open_table(TIMER_INDEX).st()?,
            outbox: txn.open_table(OUTBOX).st()?,
            outbox_due: txn.open_table(OUTBOX_DUE).st()?,
            http_pending: txn.open_table(HTTP_PENDING).st()?,
            idem: txn.open_table(IDEMPOTENCY).st()?,
            idem_expiry: txn.open_table(IDEM_EXPIRY).st()?,
            tenants: txn.open_table(TENANTS).st()?,
            keys: txn.open_table(KEYS).st()?,
            tenant_actors: txn.open_table(TENANT_ACTORS).st()?,
            tenant_ids: txn.open_table(TENANT_IDS).st()?,
            meta_table: txn.open_table(META).st()?,
            turn_log: Log::open(txn, TURN_LOG, history::turns, "history_live_turns")?,
            state_log: Log::open(txn, STATE_LOG, history::states, "history_live_states")?,
            large: LargeTables::open(txn)?,
        })
    }

    /// End of the transaction's work: sweep the history logs (see [`crate::history`]).
    pub(crate) fn finish(&mut self, slack: u64) -> R<()> {
        let (meta, actors) = (&mut self.meta_table, &mut self.actors);
        self.turn_log.finish(meta, actors, slack)?;
        self.state_log.finish(meta, actors, slack)?;
        Ok(())
    }

    /// The sequence numbers under `key` in a `(actor, seq)` table.
    fn seqs(table: &Table<'t, (&'static str, u64), &'static [u8]>, key: &str) -> R<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in table.range((key, 0)..=(key, u64::MAX)).st()? {
            seqs.push(entry.st()?.0.value().1);
        }
        Ok(seqs)
    }

    fn keys_with_prefix(
        table: &Table<'t, &'static str, &'static [u8]>,
        prefix: &str,
        max: usize,
    ) -> R<Vec<String>> {
        let mut keys = Vec::new();
        for entry in table.range(prefix..).st()? {
            let key = entry.st()?.0.value().to_owned();
            if !key.starts_with(prefix) || keys.len() >= max {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }
}

impl Tables for RedbTables<'_> {
    fn actor(&self, key: &str) -> R<Option<ActorMeta>> {
        record(self.actors.get(key).st()?)
    }

    fn put_actor(&mut self, key: &str, meta: &ActorMeta) -> R<()> {
        self.actors
            .insert(key, records::encode(meta).as_slice())
            .st()?;
        Ok(())
    }

    fn remove_actor(&mut self, key: &str) -> R<()> {
        self.actors.remove(key).st()?;
        Ok(())
    }

    fn actor_keys(&self, prefix: &str, max: usize) -> R<Vec<String>> {
        Self::keys_with_prefix(&self.actors, prefix, max)
    }

    fn state(&self, key: &str) -> R<Option<Vec<u8>>> {
        if let Some(v) = self.states.get(key).st()? {
            return Ok(Some(v.value().to_vec()));
        }
        Ok(self.large.assemble(key)?)
    }

    fn put_state(&mut self, key: &str, state: &[u8]) -> R<()> {
        self.states.insert(key, state).st()?;
        Ok(self.large.clear_ref(key)?)
    }

    fn put_state_ref(&mut self, key: &str, r: StateRef) -> R<()> {
        self.states.remove(key).st()?;
        Ok(self.large.set_ref(key, r)?)
    }

    fn remove_state(&mut self, key: &str) -> R<()> {
        self.states.remove(key).st()?;
        Ok(self.large.clear_ref(key)?)
    }

    fn stage_slice(&mut self, id: u64, index: u32, bytes: &[u8]) -> R<()> {
        Ok(self.large.stage(id, index, bytes)?)
    }

    fn unstage(&mut self, id: u64) -> R<()> {
        Ok(self.large.unstage(id)?)
    }

    fn last_seq(&self, key: &str) -> R<Option<u64>> {
        match self
            .mailbox
            .range((key, 0)..=(key, u64::MAX))
            .st()?
            .next_back()
        {
            Some(entry) => Ok(Some(entry.st()?.0.value().1)),
            None => Ok(None),
        }
    }

    fn has_mail(&self, key: &str) -> R<bool> {
        Ok(self
            .mailbox
            .range((key, 0)..=(key, u64::MAX))
            .st()?
            .next()
            .is_some())
    }

    fn put_mail(&mut self, key: &str, seq: u64, env: &Envelope) -> R<()> {
        self.mailbox
            .insert((key, seq), records::encode(env).as_slice())
            .st()?;
        Ok(())
    }

    fn take_mail(&mut self, key: &str, seq: u64) -> R<Option<Envelope>> {
        record(self.mailbox.remove((key, seq)).st()?)
    }

    fn mail(&self, key: &str) -> R<Vec<(u64, Envelope)>> {
        let mut out = Vec::new();
        for entry in self.mailbox.range((key, 0)..=(key, u64::MAX)).st()? {
            let (k, v) = entry.st()?;
            out.push((k.value().1, decode(v.value())?));
        }
        Ok(out)
    }

    fn clear_mail(&mut self, key: &str) -> R<()> {
        for seq in Self::seqs(&self.mailbox, key)? {
            self.mailbox.remove((key, seq)).st()?;
        }
        Ok(())
    }

    fn put_inbox(&mut self, key: &str, env: &Envelope) -> R<()> {
        let mut inbox = self.txn.open_table(INBOX).st()?;
        let id = inbox.last().st()?.map_or(1, |(k, _)| k.value() + 1);
        inbox
            .insert(id, (key, records::encode(env).as_slice()))
            .st()?;
        Ok(())
    }

    fn take_inbox(&mut self, id: u64) -> R<Option<(String, Envelope)>> {
        let mut inbox = self.txn.open_table(INBOX).st()?;
        let Some(v) = inbox.remove(id).st()? else {
            return Ok(None);
        };
        let (key, env) = v.value();
        Ok(Some((key.to_owned(), decode(env)?)))
    }

    fn put_dead(&mut self, key: &str, seq: u64, dl: &DeadLetter) -> R<()> {
        self.dead
            .insert((key, seq), records::encode(dl).as_slice())
            .st()?;
        Ok(())
    }

    fn take_dead(&mut self, key: &str, seq: u64) -> R<Option<DeadLetter>> {
        record(self.dead.remove((key, seq)).st()?)
    }

    fn clear_dead(&mut self, key: &str) -> R<()> {
        for seq in Self::seqs(&self.dead, key)? {
            self.dead.remove((key, seq)).st()?;
        }
        Ok(())
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
        let head = &mut meta.history;
        let record = records::encode(rec);
        let m = &self.meta_table;
        self.turn_log
            .append(m, head, key, seq, &record, keep.turns)?;
        match state {
            Some(state) => self
                .state_log
                .append(m, head, key, seq, state, keep.states)?,
            None => {
                let floor = (seq + 1).saturating_sub(keep.states);
                head.states.floor = head.states.floor.max(floor);
            }
        }
        Ok(())
    }

    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>> {
        let Some(meta) = self.actor(key)? else {
            return Ok(Vec::new());
        };
        Ok(history::records_of(
            self.turn_log.table(),
            &meta,
            before,
            max,
        )?)
    }

    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>> {
        let Some(meta) = self.actor(key)? else {
            return Ok(None);
        };
        Ok(history::state_of(self.state_log.table(), &meta, seq)?)
    }

    fn clear_history(&mut self, key: &str) -> R<()> {
        // The entries stay until a sweep finds them without a live chain.
        if let Some(mut meta) = self.actor(key)? {
            let m = &self.meta_table;
            self.turn_log.forget(m, &mut meta.history)?;
            self.state_log.forget(m, &mut meta.history)?;
        }
        Ok(())
    }

    fn request(&self, id: u128) -> R<Option<RequestRecord>> {
        record(self.requests.get(id).st()?)
    }

    fn put_request(&mut self, id: u128, rec: &RequestRecord) -> R<()> {
        self.requests
            .insert(id, records::encode(rec).as_slice())
            .st()?;
        Ok(())
    }

    fn remove_request(&mut self, id: u128) -> R<()> {
        self.requests.remove(id).st()?;
        Ok(())
    }

    fn requests_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, RequestRecord)>> {
        let mut out = Vec::new();
        for entry in self.requests.range(cursor..).st()? {
            if out.len() >= max {
                break;
            }
            let (k, v) = entry.st()?;
            out.push((k.value(), decode(v.value())?));
        }
        Ok(out)
    }

    fn module(&self, key: &str) -> R<Option<ModuleRecord>> {
        record(self.modules.get(key).st()?)
    }

    fn put_module(&mut self, key: &str, rec: &ModuleRecord) -> R<()> {
        self.modules
            .insert(key, records::encode(rec).as_slice())
            .st()?;
        Ok(())
    }

    fn remove_module(&mut self, key: &str) -> R<bool> {
        Ok(self.modules.remove(key).st()?.is_some())
    }

    fn module_keys(&self, prefix: &str) -> R<Vec<String>> {
        Self::keys_with_prefix(&self.modules, prefix, usize::MAX)
    }

    fn has_blob(&self, digest: &str) -> R<bool> {
        Ok(self.blobs.get(digest).st()?.is_some())
    }

    fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> R<()> {
        self.blobs.insert(digest, bytes).st()?;
        Ok(())
    }

    fn timer_due(&self, key: &str, name: &str) -> R<Option<UnixMs>> {
        Ok(self.timer_index.get((key, name)).st()?.map(|v| v.value()))
    }

    fn timer_pending(&self, due: UnixMs, key: &str, name: &str) -> R<bool> {
        Ok(self.timers.get((due, key, name)).st()?.is_some())
    }

    fn put_timer(&mut self, due: UnixMs, key: &str, name: &str, payload: &[u8]) -> R<()> {
        self.timers.insert((due, key, name), payload).st()?;
        self.timer_index.insert((key, name), due).st()?;
        Ok(())
    }

    fn take_timer(&mut self, due: UnixMs, key: &str, name: &str) -> R<Option<Vec<u8>>> {
        let payload = self
            .timers
            .remove((due, key, name))
            .st()?
            .map(|v| v.value().to_vec());
        if payload.is_some() {
            self.timer_index.remove((key, name)).st()?;
        }
        Ok(payload)
    }

    fn timer_names(&self, key: &str) -> R<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.timer_index.range((key, "")..(key, NAME_END)).st()? {
            names.push(entry.st()?.0.value().1.to_owned());
        }
        Ok(names)
    }

    fn due_timers(&self, now: UnixMs, max: usize) -> R<Vec<TimerKey>> {
        let mut due = Vec::new();
        for entry in self.timers.range(..(now.saturating_add(1), "", "")).st()? {
            if due.len() >= max {
                break;
            }
            let (k, _) = entry.st()?;
            let (d, actor, name) = k.value();
            due.push((d, actor.to_owned(), name.to_owned()));
        }
        Ok(due)
    }

    fn outbox(&self, id: u128) -> R<Option<OutboxEntry>> {
        record(self.outbox.get(id).st()?)
    }

    fn put_outbox(&mut self, id: u128, entry: &OutboxEntry) -> R<()> {
        self.outbox
            .insert(id, records::encode(entry).as_slice())
            .st()?;
        self.outbox_due.insert((entry.due_ms, id), ()).st()?;
        Ok(())
    }

    fn take_outbox(&mut self, id: u128) -> R<Option<OutboxEntry>> {
        let Some(entry) = record::<OutboxEntry>(self.outbox.remove(id).st()?)? else {
            return Ok(None);
        };
        self.outbox_due.remove((entry.due_ms, id)).st()?;
        Ok(Some(entry))
    }

    fn outbox_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, OutboxEntry)>> {
        let mut out = Vec::new();
        for entry in self.outbox.range(cursor..).st()? {
            if out.len() >= max {
                break;
            }
            let (k, v) = entry.st()?;
            out.push((k.value(), decode(v.value())?));
        }
        Ok(out)
    }

    fn http_pending(&self, key: &str, call: &str) -> R<Option<u128>> {
        Ok(self.http_pending.get((key, call)).st()?.map(|v| v.value()))
    }

    fn put_http_pending(&mut self, key: &str, call: &str, id: u128) -> R<()> {
        self.http_pending.insert((key, call), id).st()?;
        Ok(())
    }

    fn remove_http_pending(&mut self, key: &str, call: &str) -> R<()> {
        self.http_pending.remove((key, call)).st()?;
        Ok(())
    }

    fn clear_http_pending(&mut self, key: &str) -> R<()> {
        let mut calls = Vec::new();
        for entry in self.http_pending.range((key, "")..).st()? {
            let (k, _) = entry.st()?;
            if k.value().0 != key {
                break;
            }
            calls.push(k.value().1.to_owned());
        }
        for call in calls {
            self.http_pending.remove((key, call.as_str())).st()?;
        }
        Ok(())
    }

    fn idempotency(&self, tenant: &str, key: &str) -> R<Option<IdempotencyRecord>> {
        record(self.idem.get((tenant, key)).st()?)
    }

    fn put_idempotency(&mut self, tenant: &str, key: &str, rec: &IdempotencyRecord) -> R<()> {
        // The expiry index holds one entry per key: a replaced record's goes with it.
        let old: Option<IdempotencyRecord> = record(
            self.idem
                .insert((tenant, key), records::encode(rec).as_slice())
                .st()?,
        )?;
        if let Some(old) = old {
            self.idem_expiry
                .remove((old.expires_ms, tenant, key))
                .st()?;
        }
        self.idem_expiry
            .insert((rec.expires_ms, tenant, key), ())
            .st()?;
        Ok(())
    }

    fn remove_idempotency(&mut self, tenant: &str, key: &str) -> R<()> {
        let old: Option<IdempotencyRecord> = record(self.idem.remove((tenant, key)).st()?)?;
        if let Some(old) = old {
            self.idem_expiry
                .remove((old.expires_ms, tenant, key))
                .st()?;
        }
        Ok(())
    }

    fn expiring(&self, before: UnixMs, max: usize) -> R<Vec<(UnixMs, String, String)>> {
        let mut out = Vec::new();
        for entry in self.idem_expiry.range(..(before, "", "")).st()? {
            if out.len() >= max {
                break;
            }
            let (k, _) = entry.st()?;
            let (at, tenant, key) = k.value();
            out.push((at, tenant.to_owned(), key.to_owned()));
        }
        Ok(out)
    }

    fn forget_expiry(&mut self, expires: UnixMs, tenant: &str, key: &str) -> R<()> {
        self.idem_expiry.remove((expires, tenant, key)).st()?;
        Ok(())
    }

    fn idempotency_keys(&self, tenant: &str, max: usize) -> R<Vec<(String, IdempotencyRecord)>> {
        let mut out = Vec::new();
        for entry in self.idem.range((tenant, "")..).st()? {
            let (k, v) = entry.st()?;
            if k.value().0 != tenant || out.len() >= max {
                break;
            }
            out.push((k.value().1.to_owned(), decode(v.value())?));
        }
        Ok(out)
    }

    fn tenant(&self, name: &str) -> R<Option<TenantRecord>> {
        record(self.tenants.get(name).st()?)
    }

    fn put_tenant(&mut self, name: &str, rec: &TenantRecord) -> R<()> {
        self.tenants
            .insert(name, records::encode(rec).as_slice())
            .st()?;
        Ok(())
    }

    fn take_tenant(&mut self, name: &str) -> R<Option<TenantRecord>> {
        record(self.tenants.remove(name).st()?)
    }

    fn tenant_name(&self, id: &str) -> R<Option<String>> {
        Ok(self.tenant_ids.get(id).st()?.map(|v| v.value().to_owned()))
    }

    fn put_tenant_name(&mut self, id: &str, name: &str) -> R<()> {
        self.tenant_ids.insert(id, name).st()?;
        Ok(())
    }

    fn remove_tenant_name(&mut self, id: &str) -> R<()> {
        self.tenant_ids.remove(id).st()?;
        Ok(())
    }

    fn actor_count(&self, tenant: &str) -> R<u64> {
        Ok(self
            .tenant_actors
            .get(tenant)
            .st()?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn put_actor_count(&mut self, tenant: &str, count: u64) -> R<()> {
        self.tenant_actors.insert(tenant, count).st()?;
        Ok(())
    }

    fn remove_actor_count(&mut self, tenant: &str) -> R<()> {
        self.tenant_actors.remove(tenant).st()?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> R<Option<KeyRecord>> {
        record(self.keys.get(id).st()?)
    }

    fn put_api_key(&mut self, id: &str, rec: &KeyRecord) -> R<()> {
        self.keys.insert(id, records::encode(rec).as_slice()).st()?;
        Ok(())
    }

    fn remove_api_key(&mut self, id: &str) -> R<()> {
        self.keys.remove(id).st()?;
        Ok(())
    }

    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>> {
        let mut out = Vec::new();
        for entry in self.keys.iter().st()? {
            let (k, v) = entry.st()?;
            out.push((k.value().to_owned(), decode(v.value())?));
        }
        Ok(out)
    }

    fn meta(&self, key: &str) -> R<Option<Vec<u8>>> {
        Ok(self.meta_table.get(key).st()?.map(|v| v.value().to_vec()))
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> R<()> {
        self.meta_table.insert(key, value).st()?;
        Ok(())
    }

    fn remove_meta(&mut self, key: &str) -> R<()> {
        self.meta_table.remove(key).st()?;
        Ok(())
    }

    fn purge_job(&self, key: &str) -> R<Option<PurgeJob>> {
        record(self.meta_table.get(key).st()?)
    }

    fn put_purge_job(&mut self, key: &str, job: &PurgeJob) -> R<()> {
        self.meta_table
            .insert(key, records::encode(job).as_slice())
            .st()?;
        Ok(())
    }
}

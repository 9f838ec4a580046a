//! The operator's writes on [`Tx`]: tenants, keys, settings, module versions, actor
//! deletion (its waiting requests fail), dead-letter retries, an actor's move to another
//! module version and its rollback, and the batched purge of a deleted tenant.

use dwell_storage::{Error, Tables};
use dwell_types::records::{Delivery, ModuleRecord, ModuleVersion, PURGE_PREFIX, PurgeJob};
use dwell_types::upgrade::UpgradeUndo;
use dwell_types::{ActorId, MessageKind, RequestId, RequestStatus, TenantId};

use super::Tx;
use crate::ops::{AdminOp, EnqueueAck, EnqueueRequest, NewRequest};

type R<T> = Result<T, Error>;

impl<T: Tables> Tx<'_, T> {
    /// An operator's or the control plane's write; `true` if it changed something.
    pub fn admin(&mut self, op: AdminOp) -> R<bool> {
        match op {
            AdminOp::PutTenant {
                name,
                record,
                create_only,
            } => {
                if create_only && self.tables.tenant(&name)?.is_some() {
                    return Ok(false);
                }
                if let Some(id) = &record.id {
                    self.tables.put_tenant_name(id, &name)?;
                }
                self.tables.put_tenant(&name, &record)?;
                Ok(true)
            }
            AdminOp::DeleteTenant { name } => {
                let Some(record) = self.tables.take_tenant(&name)? else {
                    return Ok(false);
                };
                let tenant = record.id.unwrap_or(name);
                self.tables.remove_tenant_name(&tenant)?;
                for (id, rec) in self.tables.api_keys()? {
                    if rec.tenant == tenant {
                        self.tables.remove_api_key(&id)?;
                    }
                }
                // Everything else of the tenant is purged in the background, in batches;
                // the job is durable, so a restart resumes it.
                self.tables
                    .put_purge_job(&format!("{PURGE_PREFIX}{tenant}"), &PurgeJob::default())?;
                for m in self.tables.module_keys(&format!("{tenant}/"))? {
                    self.tables.remove_module(&m)?;
                }
                Ok(true)
            }
            AdminOp::PutKey { id, record } => {
                self.tables.put_api_key(&id, &record)?;
                Ok(true)
            }
            AdminOp::DeleteKey { tenant, id } => {
                let owner = self.tables.api_key(&id)?.map(|r| r.tenant);
                if owner.as_deref() != Some(tenant.as_str()) {
                    return Ok(false);
                }
                self.tables.remove_api_key(&id)?;
                Ok(true)
            }
            AdminOp::PutMeta { key, value } => {
                self.tables.put_meta(&key, &value)?;
                Ok(true)
            }
            AdminOp::RemoveMeta { key } => {
                let had = self.tables.meta(&key)?.is_some();
                self.tables.remove_meta(&key)?;
                Ok(had)
            }
            AdminOp::DeleteModule { tenant, name } => {
                self.tables.remove_module(&format!("{tenant}/{name}"))
            }
            AdminOp::DeleteActor { actor } => self.delete_actor(&actor),
            AdminOp::PurgeTenant { id, max } => self.purge_tenant(&id, max),
            AdminOp::UpgradeActor {
                actor,
                from_digest,
                head_seq,
                to_version,
                to_digest,
                state,
                undo_key,
            } => self.upgrade_actor(
                &actor,
                (&from_digest, head_seq),
                (to_version, to_digest),
                state,
                &undo_key,
            ),
            AdminOp::RollbackActor { actor, undo_key } => self.rollback_actor(&actor, &undo_key),
            AdminOp::RetryDeadLetter {
                actor,
                seq,
                new_request,
            } => {
                let key = actor.storage_key();
                let Some(dl) = self.tables.take_dead(&key, seq)? else {
                    return Ok(false);
                };
                let mut env = dl.envelope;
                env.enqueued_ms = self.now;
                let request = match &mut env.kind {
                    MessageKind::Request { request } => {
                        *request = new_request;
                        Some(NewRequest {
                            id: new_request,
                            callback_url: None,
                        })
                    }
                    _ => None,
                };
                let ack = self.enqueue_request(EnqueueRequest {
                    actor: actor.clone(),
                    envelope: env,
                    request,
                    idempotency: None,
                })?;
                Ok(matches!(ack, EnqueueAck::Accepted { .. }))
            }
        }
    }

    /// One batch of a deleted tenant's purge (see [`AdminOp::PurgeTenant`]): actors
    /// first, then idempotency keys, then a scan of the outbox and of the requests.
    fn purge_tenant(&mut self, id: &str, max: usize) -> R<bool> {
        let job_key = format!("{PURGE_PREFIX}{id}");
        let Some(mut job) = self.tables.purge_job(&job_key)? else {
            return Ok(false);
        };
        let mut budget = max.max(1);
        // Actors, with everything keyed by the actor.
        let prefix = format!("{id}/");
        if self.config.placement.is_some() {
            // A cluster node purges the actors of its partitions; the others purge
            // theirs. Those ahead in the key order may be others': a page wider than the
            // budget finds this node's share (it shrinks as the others purge theirs).
            let page = self.tables.actor_keys(&prefix, budget.saturating_mul(8))?;
            let mine: Vec<&String> = page
                .iter()
                .filter(|k| ActorId::from_storage_key(k).is_some_and(|a| self.config.local(&a)))
                .take(budget)
                .collect();
            for key in &mine {
                self.purge_actor(key)?;
            }
            budget -= mine.len().min(budget);
            if budget == 0 || mine.len() < page.len() {
                // Others' actors remain: the shared rest waits until they are gone.
                return Ok(true);
            }
        } else {
            let actors = self.tables.actor_keys(&prefix, budget)?;
            for key in &actors {
                self.purge_actor(key)?;
            }
            budget -= actors.len().min(budget);
            if budget == 0 {
                return Ok(true);
            }
        }
        self.tables.remove_actor_count(id)?;
        // Idempotency keys.
        let keys = self.tables.idempotency_keys(id, budget)?;
        for (key, _) in &keys {
            self.tables.remove_idempotency(id, key)?;
        }
        budget -= keys.len().min(budget);
        if budget == 0 {
            return Ok(true);
        }
        // The outbox, then the requests: keyed by id, so scanned from a cursor.
        let owned = |actor: &ActorId| actor.tenant.0 == id;
        while job.phase < 2 && budget > 0 {
            let mut scanned = Vec::new();
            if job.phase == 0 {
                for (oid, e) in self.tables.outbox_from(job.cursor, budget)? {
                    let mine = match &e.delivery {
                        Delivery::Http { actor, .. } => owned(actor),
                        Delivery::Callback { request, .. } => self
                            .tables
                            .request(*request)?
                            .is_some_and(|r| owned(&r.actor)),
                    };
                    scanned.push((oid, mine));
                }
                for (oid, mine) in &scanned {
                    if *mine {
                        self.tables.take_outbox(*oid)?;
                    }
                }
            } else {
                for (rid, r) in self.tables.requests_from(job.cursor, budget)? {
                    scanned.push((rid, owned(&r.actor)));
                }
                for (rid, mine) in &scanned {
                    if *mine {
                        self.tables.remove_request(*rid)?;
                    }
                }
            }
            budget -= scanned.len().min(budget);
            match scanned.last() {
                Some((last, _)) if budget == 0 => job.cursor = last.saturating_add(1),
                _ => {
                    job.phase += 1;
                    job.cursor = 0;
                }
            }
        }
        if job.phase >= 2 {
            self.tables.remove_meta(&job_key)?;
            return Ok(false);
        }
        self.tables.put_purge_job(&job_key, &job)?;
        Ok(true)
    }

    /// Remove an actor of a deleted tenant and everything keyed by it, answering no one.
    fn purge_actor(&mut self, key: &str) -> R<()> {
        let Some(mut meta) = self.tables.actor(key)? else {
            return Ok(());
        };
        self.tables.clear_mail(key)?;
        self.tables.clear_dead(key)?;
        self.tables.clear_history(key)?;
        self.cancel_all_timers(key, &mut meta)?;
        self.tables.clear_http_pending(key)?;
        self.tables.remove_state(key)?;
        self.tables.remove_actor(key)
    }

    fn delete_actor(&mut self, actor: &ActorId) -> R<bool> {
        let key = actor.storage_key();
        let Some(mut meta) = self.tables.actor(&key)? else {
            return Ok(false);
        };
        let failed: Vec<RequestId> = self
            .tables
            .mail(&key)?
            .into_iter()
            .filter_map(|(_, env)| match env.kind {
                MessageKind::Request { request } => Some(request),
                _ => None,
            })
            .collect();
        self.tables.clear_mail(&key)?;
        self.cancel_all_timers(&key, &mut meta)?;
        self.tables.clear_dead(&key)?;
        self.tables.clear_history(&key)?;
        self.tables.remove_state(&key)?;
        self.tables.remove_actor(&key)?;
        let tenant = actor.tenant.0.as_str();
        let count = self.tables.actor_count(tenant)?;
        self.tables
            .put_actor_count(tenant, count.saturating_sub(1))?;
        for id in failed {
            self.settle(
                &actor.tenant,
                id,
                RequestStatus::Failed {
                    error: format!("actor {actor} was deleted"),
                    refusal: None,
                },
            )?;
        }
        Ok(true)
    }

    fn upgrade_actor(
        &mut self,
        actor: &ActorId,
        (from_digest, head_seq): (&str, u64),
        (to_version, to_digest): (u32, String),
        state: Option<Vec<u8>>,
        undo_key: &str,
    ) -> R<bool> {
        let key = actor.storage_key();
        let Some(mut meta) = self.tables.actor(&key)? else {
            return Ok(false);
        };
        if meta.digest != from_digest || meta.head_seq != head_seq {
            return Ok(false);
        }
        let undo = UpgradeUndo {
            version: meta.version,
            digest: std::mem::replace(&mut meta.digest, to_digest.clone()),
            state: self.tables.state(&key)?,
            to_version,
            to_digest,
            turns: meta.turns,
            head_seq,
            at_ms: self.now,
        };
        meta.version = to_version;
        meta.updated_ms = self.now;
        match &state {
            Some(s) => self.tables.put_state(&key, s)?,
            None => self.tables.remove_state(&key)?,
        }
        self.tables.put_actor(&key, &meta)?;
        self.tables.put_meta(undo_key, &undo.to_bytes())?;
        Ok(true)
    }

    fn rollback_actor(&mut self, actor: &ActorId, undo_key: &str) -> R<bool> {
        let key = actor.storage_key();
        let Some(undo) = self
            .tables
            .meta(undo_key)?
            .and_then(|b| UpgradeUndo::from_bytes(&b))
        else {
            return Ok(false);
        };
        let Some(mut meta) = self.tables.actor(&key)? else {
            return Ok(false);
        };
        if meta.digest != undo.to_digest || meta.turns != undo.turns {
            return Ok(false);
        }
        meta.version = undo.version;
        meta.digest = undo.digest;
        meta.updated_ms = self.now;
        match &undo.state {
            Some(s) => self.tables.put_state(&key, s)?,
            None => self.tables.remove_state(&key)?,
        }
        self.tables.put_actor(&key, &meta)?;
        self.tables.remove_meta(undo_key)?;
        Ok(true)
    }

    /// Store a module's bytes under a new version of `tenant/name` (nothing when the
    /// latest version has the same digest). `true` when a version was added.
    pub fn put_module(
        &mut self,
        tenant: &TenantId,
        name: &str,
        bytes: &[u8],
        digest: &str,
    ) -> R<(ModuleVersion, bool)> {
        let key = format!("{}/{}", tenant.0, name);
        let mut rec: ModuleRecord = self.tables.module(&key)?.unwrap_or_default();
        if let Some(latest) = rec.latest()
            && latest.digest == digest
        {
            return Ok((latest.clone(), false));
        }
        if !self.tables.has_blob(digest)? {
            self.tables.put_blob(digest, bytes)?;
        }
        let v = ModuleVersion {
            version: rec.latest().map(|l| l.version + 1).unwrap_or(1),
            digest: digest.to_owned(),
            size: bytes.len() as u64,
            created_ms: self.now,
        };
        rec.versions.push(v.clone());
        self.tables.put_module(&key, &rec)?;
        Ok((v, true))
    }
}

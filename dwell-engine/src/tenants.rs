//! Tenants as the engine sees them: who a bearer key belongs to, each tenant's quotas,
//! limits, outbound allowlist and callback secret, its request-rate bucket and its share
//! of concurrent turns. Loaded from the store at start and updated in place by the admin
//! API, so a revoked key stops working at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::domain::{
    Limits, QuotaOverrides, Quotas, TenantId, TokenBucket, UnixMs, hash_key, key_id, same_hash,
};
use crate::store::{KeyRecord, TenantRecord};

/// One tenant, ready for the hot path.
pub struct TenantInfo {
    /// The tenant's identity in storage keys (see `TenantRecord::id`).
    pub id: TenantId,
    /// The name the admin API knows it by.
    pub name: String,
    pub record: TenantRecord,
    pub quotas: Quotas,
    pub limits: Arc<Limits>,
    bucket: Mutex<TokenBucket>,
    /// Bytes of guest log this tenant may still write (`log_bytes_per_second`).
    log_bucket: Mutex<TokenBucket>,
    /// This tenant's concurrent turns (its `concurrent_turns` quota).
    pub turn_permits: Arc<Semaphore>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Tenant(TenantId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid,
}

pub struct Tenants {
    defaults: Quotas,
    base: Limits,
    map: RwLock<HashMap<TenantId, Arc<TenantInfo>>>,
    /// name → identity of the live tenants.
    names: RwLock<HashMap<String, TenantId>>,
    /// key id → (tenant, SHA-256 of the key)
    keys: RwLock<HashMap<String, (TenantId, [u8; 32])>>,
    admin: RwLock<Option<[u8; 32]>>,
}

fn hash_of(v: &[u8]) -> Option<[u8; 32]> {
    v.try_into().ok()
}

impl Tenants {
    pub fn new(defaults: Quotas, base: Limits) -> Self {
        Tenants {
            defaults,
            base,
            map: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            admin: RwLock::new(None),
        }
    }

    pub fn set_admin_hash(&self, hash: [u8; 32]) {
        *self.admin.write().unwrap_or_else(|p| p.into_inner()) = Some(hash);
    }

    /// Install or refresh a tenant.
    pub fn put(&self, name: &str, record: TenantRecord, now_ms: UnixMs) {
        let quotas = self.defaults.with(&record.quotas);
        let id = TenantId(record.id.clone().unwrap_or_else(|| name.to_owned()));
        let info = TenantInfo {
            id: id.clone(),
            name: name.to_owned(),
            limits: Arc::new(quotas.limits(&self.base)),
            turn_permits: Arc::new(Semaphore::new(quotas.concurrent_turns as usize)),
            bucket: Mutex::new(TokenBucket::new(now_ms)),
            log_bucket: Mutex::new(TokenBucket::new(now_ms)),
            quotas,
            record,
        };
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.insert(id.clone(), Arc::new(info));
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), id);
    }

    /// Make the tenants and keys those given (a cluster node's view of the shared
    /// store): a new or changed tenant is installed (an unchanged one keeps its rate
    /// buckets), one not given is forgotten, and so is a key not given. Returns the
    /// identities of the tenants forgotten.
    pub fn sync(
        &self,
        tenants: Vec<(String, TenantRecord)>,
        keys: &[(String, KeyRecord)],
        now_ms: UnixMs,
    ) -> Vec<TenantId> {
        let names: std::collections::HashSet<String> =
            tenants.iter().map(|(n, _)| n.clone()).collect();
        for (name, rec) in tenants {
            let same = self
                .by_name(&name)
                .is_some_and(|t| rmp_serde::to_vec(&t.record).ok() == rmp_serde::to_vec(&rec).ok());
            if !same {
                self.put(&name, rec, now_ms);
            }
        }
        let stale: Vec<String> = self
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        let gone = stale.iter().filter_map(|n| self.remove(n)).collect();
        let ids: std::collections::HashSet<&str> = keys.iter().map(|(id, _)| id.as_str()).collect();
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| ids.contains(id.as_str()));
        for (id, rec) in keys {
            self.put_key(id, rec);
        }
        gone
    }

    /// Forget the tenant named `name` and its keys; returns its identity.
    pub fn remove(&self, name: &str) -> Option<TenantId> {
        let t = self
            .names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)?;
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&t);
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (owner, _)| owner != &t);
        Some(t)
    }

    /// The live tenant named `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<TenantInfo>> {
        let id = self
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()?;
        self.get(&id)
    }

    pub fn put_key(&self, id: &str, rec: &KeyRecord) {
        if let Some(hash) = hash_of(&rec.hash) {
            self.keys
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_owned(), (TenantId(rec.tenant.clone()), hash));
        }
    }

    pub fn remove_key(&self, id: &str) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    pub fn get(&self, tenant: &TenantId) -> Option<Arc<TenantInfo>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<TenantInfo>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Key ids of a tenant.
    pub fn key_ids(&self, tenant: &TenantId) -> Vec<String> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<_> = keys
            .iter()
            .filter(|(_, (t, _))| t == tenant)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Who holds this bearer token? Hashes are compared in constant time.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Caller, AuthError> {
        let token = bearer.ok_or(AuthError::Missing)?;
        let presented = hash_key(token);
        if let Some(admin) = *self.admin.read().unwrap_or_else(|p| p.into_inner())
            && same_hash(&admin, &presented)
        {
            return Ok(Caller::Admin);
        }
        let id = key_id(token).ok_or(AuthError::Invalid)?;
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let (tenant, stored) = keys.get(id).ok_or(AuthError::Invalid)?;
        if !same_hash(stored, &presented) {
            return Err(AuthError::Invalid);
        }
        // A key of a deleted tenant is dead too.
        if self.get(tenant).is_none() {
            return Err(AuthError::Invalid);
        }
        Ok(Caller::Tenant(tenant.clone()))
    }

    /// Take one request token for `tenant`; `Err(wait)` when over its rate.
    pub fn admit(&self, tenant: &TenantId, now_ms: UnixMs) -> Result<(), Duration> {
        let Some(t) = self.get(tenant) else {
            return Ok(());
        };
        let mut bucket = t.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.take(
            now_ms,
            t.quotas.requests_per_second,
            t.quotas.burst.max(t.quotas.requests_per_second),
        )
    }

    /// May `tenant`'s guests write `bytes` more of log now?
    pub fn admit_log(&self, tenant: &TenantId, bytes: usize, now_ms: UnixMs) -> bool {
        let Some(t) = self.get(tenant) else {
            return false;
        };
        let rate = t.limits.log_bytes_per_second;
        let mut bucket = t.log_bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket
            .take_n(now_ms, bytes as u64, rate, rate.saturating_mul(4))
            .is_ok()
    }

    /// Effective overrides after a patch.
    pub fn merge(old: &QuotaOverrides, patch: &QuotaOverrides) -> QuotaOverrides {
        QuotaOverrides {
            max_modules: patch.max_modules.or(old.max_modules),
            max_module_bytes: patch.max_module_bytes.or(old.max_module_bytes),
            max_actors: patch.max_actors.or(old.max_actors),
            max_state_bytes: patch.max_state_bytes.or(old.max_state_bytes),
            max_message_bytes: patch.max_message_bytes.or(old.max_message_bytes),
            turn_time_ms: patch.turn_time_ms.or(old.turn_time_ms),
            memory_mb: patch.memory_mb.or(old.memory_mb),
            timers_per_actor: patch.timers_per_actor.or(old.timers_per_actor),
            requests_per_second: patch.requests_per_second.or(old.requests_per_second),
            burst: patch.burst.or(old.burst),
            concurrent_turns: patch.concurrent_turns.or(old.concurrent_turns),
            history_turns: patch.history_turns.or(old.history_turns),
            history_age_s: patch.history_age_s.or(old.history_age_s),
        }
    }
}

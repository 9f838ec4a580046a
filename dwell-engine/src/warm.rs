//! Warm instances between turns: a pool of healthy, idle instances per tenant and module
//! version. A runner takes one for its batch (or keeps its own while its actor stays
//! busy) and parks it here when its actor goes idle; the next runner of *any* actor of
//! the same tenant and module version picks it up instead of instantiating again. Least
//! recently parked instances are evicted first.
//!
//! Why sharing is safe: the state snapshot, not the instance, is the truth. Every turn
//! gets its actor's snapshot passed in and its effects recorded afresh, so an instance
//! carries nothing of one actor into another's turn unless the guest hides data in its
//! globals — and an instance never crosses a tenant or a module version, so that data
//! could only ever reach the same tenant's same code. A trapped instance is never parked.
//!
//! Idle instances cost memory (their linear memory as the guest last grew it), so the
//! pool is bounded in bytes as well as in count — in total and per tenant — and drops
//! instances idle for longer than a minute: a dropped instance's memory goes back to the
//! allocator (the pooling allocator decommits its slot).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::TenantId;
use crate::executor::Warm;

/// Which instances are interchangeable: same tenant, same module digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub tenant: TenantId,
    pub digest: String,
}

/// How much the pool may keep.
#[derive(Debug, Clone, Copy)]
pub struct WarmLimits {
    /// Idle instances in all.
    pub instances: usize,
    /// Their linear memory in all, in bytes.
    pub bytes: usize,
    /// Their linear memory per tenant, in bytes.
    pub tenant_bytes: usize,
    /// An instance idle for longer is dropped.
    pub idle: Duration,
}

impl Default for WarmLimits {
    fn default() -> Self {
        WarmLimits {
            instances: 128,
            bytes: 256 << 20,
            tenant_bytes: 64 << 20,
            idle: Duration::from_secs(60),
        }
    }
}

pub struct WarmCache {
    limits: WarmLimits,
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    /// Idle instances by key, most recently parked last, each with its tick.
    by_key: HashMap<PoolKey, Vec<(u64, Warm)>>,
    /// tick → (key, parked at), oldest first (for eviction).
    by_age: BTreeMap<u64, (PoolKey, Instant)>,
    len: usize,
    bytes: usize,
    tenant_bytes: HashMap<TenantId, usize>,
}

impl Lru {
    /// Remove the instance parked at `tick` (under `key`).
    fn remove(&mut self, tick: u64, key: &PoolKey) -> Option<Warm> {
        self.by_age.remove(&tick);
        let stack = self.by_key.get_mut(key)?;
        let pos = stack.iter().position(|(t, _)| *t == tick)?;
        let (_, warm) = stack.remove(pos);
        if stack.is_empty() {
            self.by_key.remove(key);
        }
        self.len -= 1;
        self.account(&key.tenant, warm.memory_bytes(), false);
        Some(warm)
    }

    fn account(&mut self, tenant: &TenantId, bytes: usize, add: bool) {
        let t = self.tenant_bytes.entry(tenant.clone()).or_default();
        if add {
            *t += bytes;
            self.bytes += bytes;
        } else {
            *t = t.saturating_sub(bytes);
            self.bytes = self.bytes.saturating_sub(bytes);
            if *t == 0 {
                self.tenant_bytes.remove(tenant);
            }
        }
    }

    /// The oldest instance of `tenant` (any tenant when `None`).
    fn oldest(&self, tenant: Option<&TenantId>) -> Option<(u64, PoolKey)> {
        self.by_age
            .iter()
            .find(|(_, (k, _))| tenant.is_none_or(|t| &k.tenant == t))
            .map(|(t, (k, _))| (*t, k.clone()))
    }
}

impl WarmCache {
    pub fn new(limits: WarmLimits) -> Self {
        WarmCache {
            limits,
            inner: Mutex::new(Lru::default()),
        }
    }

    /// Idle instances in the pool (for the metrics).
    pub fn idle(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len
    }

    /// An idle instance for `key`, the most recently parked one.
    pub fn take(&self, key: &PoolKey) -> Option<Warm> {
        if self.limits.instances == 0 {
            return None;
        }
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let tick = lru.by_key.get(key)?.last()?.0;
        lru.remove(tick, key)
    }

    /// Park a healthy, idle instance; evict the least recently parked ones past the
    /// pool's count and byte limits, and those idle too long.
    pub fn put(&self, key: PoolKey, warm: Warm) {
        let bytes = warm.memory_bytes();
        if self.limits.instances == 0 || bytes > self.limits.tenant_bytes {
            return; // too big to keep idle: dropped, its memory returned
        }
        let mut evicted = Vec::new();
        {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let lru = &mut *guard;
            lru.tick += 1;
            let tick = lru.tick;
            let tenant = key.tenant.clone();
            lru.by_age.insert(tick, (key.clone(), Instant::now()));
            lru.by_key.entry(key).or_default().push((tick, warm));
            lru.len += 1;
            lru.account(&tenant, bytes, true);
            let over_tenant = |lru: &Lru| {
                lru.tenant_bytes.get(&tenant).copied().unwrap_or(0) > self.limits.tenant_bytes
            };
            while over_tenant(lru) {
                let Some((t, k)) = lru.oldest(Some(&tenant)) else {
                    break;
                };
                evicted.extend(lru.remove(t, &k));
            }
            let idle = |lru: &Lru| {
                lru.by_age
                    .first_key_value()
                    .is_some_and(|(_, (_, at))| at.elapsed() > self.limits.idle)
            };
            while lru.len > self.limits.instances || lru.bytes > self.limits.bytes || idle(lru) {
                let Some((t, k)) = lru.oldest(None) else {
                    break;
                };
                evicted.extend(lru.remove(t, &k));
            }
        }
        // Instances are torn down outside the lock.
        drop(evicted);
    }

    /// Drop instances idle for longer than the limit (called now and then, so an idle
    /// node gives their memory back).
    pub fn expire(&self) {
        let evicted: Vec<Warm> = {
            let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            while let Some((t, (k, at))) = lru.by_age.first_key_value() {
                if at.elapsed() <= self.limits.idle {
                    break;
                }
                let (t, k) = (*t, k.clone());
                out.extend(lru.remove(t, &k));
            }
            out
        };
        drop(evicted);
    }

    /// Drop every idle instance of a tenant (its modules are gone).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let dropped: Vec<Warm> = {
            let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            while let Some((t, k)) = lru.oldest(Some(tenant)) {
                out.extend(lru.remove(t, &k));
            }
            out
        };
        drop(dropped);
    }
}

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

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::domain::TenantId;
use crate::executor::Warm;

/// Which instances are interchangeable: same tenant, same module digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub tenant: TenantId,
    pub digest: String,
}

pub struct WarmCache {
    cap: usize,
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    /// Idle instances by key, most recently parked last, each with its tick.
    by_key: HashMap<PoolKey, Vec<(u64, Warm)>>,
    /// tick → key, oldest first (for eviction).
    by_age: BTreeMap<u64, PoolKey>,
    len: usize,
}

impl WarmCache {
    pub fn new(cap: usize) -> Self {
        WarmCache {
            cap,
            inner: Mutex::new(Lru::default()),
        }
    }

    /// An idle instance for `key`, the most recently parked one.
    pub fn take(&self, key: &PoolKey) -> Option<Warm> {
        if self.cap == 0 {
            return None;
        }
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let stack = lru.by_key.get_mut(key)?;
        let (tick, warm) = stack.pop()?;
        if stack.is_empty() {
            lru.by_key.remove(key);
        }
        lru.by_age.remove(&tick);
        lru.len -= 1;
        Some(warm)
    }

    /// Park a healthy, idle instance.
    pub fn put(&self, key: PoolKey, warm: Warm) {
        if self.cap == 0 {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let lru = &mut *guard;
            lru.tick += 1;
            let tick = lru.tick;
            lru.by_age.insert(tick, key.clone());
            lru.by_key.entry(key).or_default().push((tick, warm));
            lru.len += 1;
            while lru.len > self.cap {
                let Some((old_tick, old_key)) = lru.by_age.pop_first() else {
                    break;
                };
                if let Some(stack) = lru.by_key.get_mut(&old_key) {
                    // The oldest of a key is at the bottom of its stack.
                    if let Some(pos) = stack.iter().position(|(t, _)| *t == old_tick) {
                        evicted.push(stack.remove(pos).1);
                        lru.len -= 1;
                    }
                    if stack.is_empty() {
                        lru.by_key.remove(&old_key);
                    }
                }
            }
        }
        // Instances are torn down outside the lock.
        drop(evicted);
    }

    /// Drop every idle instance of a tenant (its modules are gone).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let dropped: Vec<Vec<(u64, Warm)>> = {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let lru = &mut *guard;
            let keys: Vec<PoolKey> = lru
                .by_key
                .keys()
                .filter(|k| &k.tenant == tenant)
                .cloned()
                .collect();
            let mut out = Vec::new();
            for k in keys {
                if let Some(stack) = lru.by_key.remove(&k) {
                    for (t, _) in &stack {
                        lru.by_age.remove(t);
                    }
                    lru.len -= stack.len();
                    out.push(stack);
                }
            }
            out
        };
        drop(dropped);
    }
}

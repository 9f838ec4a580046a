//! Warm instances kept between an actor's runners: when an actor goes idle its healthy
//! instance is parked here (least recently used evicted first), and its next runner
//! picks it up instead of instantiating again. Safe because an instance only ever serves
//! the actor it was created for, and the state snapshot — not the instance — is the truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::domain::ActorId;
use crate::executor::Warm;

pub struct WarmCache {
    cap: usize,
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    by_actor: HashMap<ActorId, (u64, Warm)>,
    by_age: BTreeMap<u64, ActorId>,
}

impl WarmCache {
    pub fn new(cap: usize) -> Self {
        WarmCache {
            cap,
            inner: Mutex::new(Lru::default()),
        }
    }

    pub fn take(&self, actor: &ActorId) -> Option<Warm> {
        if self.cap == 0 {
            return None;
        }
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (tick, warm) = lru.by_actor.remove(actor)?;
        lru.by_age.remove(&tick);
        Some(warm)
    }

    pub fn put(&self, actor: &ActorId, warm: Warm) {
        if self.cap == 0 {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            lru.tick += 1;
            let tick = lru.tick;
            if let Some((old_tick, old)) = lru.by_actor.insert(actor.clone(), (tick, warm)) {
                lru.by_age.remove(&old_tick);
                evicted.push(old);
            }
            lru.by_age.insert(tick, actor.clone());
            while lru.by_actor.len() > self.cap {
                let Some((_, oldest)) = lru.by_age.pop_first() else {
                    break;
                };
                if let Some((_, w)) = lru.by_actor.remove(&oldest) {
                    evicted.push(w);
                }
            }
        }
        // Instances are torn down outside the lock.
        drop(evicted);
    }
}

//! The scheduler: one turn at a time per actor, many actors in parallel.
//!
//! An actor is either idle (absent from the map) or has exactly one runner task. A
//! notification for a running actor sets its `more` flag, so the runner looks at the
//! mailbox once more before it retires; that closes the race between "mailbox looked
//! empty" and "a message just arrived". A semaphore bounds how many runners work at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::domain::ActorId;

use super::Inner;

pub struct Scheduler {
    /// actor → "more mail arrived while running"
    running: Mutex<HashMap<ActorId, bool>>,
    pub(super) permits: Arc<Semaphore>,
    /// Turns executing at once on the node (one per core).
    pub(super) exec_slots: Arc<Semaphore>,
}

impl Scheduler {
    pub fn new(max_active: usize) -> Self {
        Scheduler {
            running: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_active.max(1))),
            exec_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }
    }

    /// Called by a runner that found no mail: retire unless more arrived meanwhile.
    pub(super) fn retire(&self, actor: &ActorId) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get_mut(actor) {
            Some(more) if *more => {
                *more = false;
                false
            }
            _ => {
                running.remove(actor);
                true
            }
        }
    }
}

/// An actor has new mail: start its runner, or tell the running one to look again.
pub(super) fn notify(inner: &Arc<Inner>, actor: ActorId) {
    {
        let mut running = inner
            .scheduler
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(more) = running.get_mut(&actor) {
            *more = true;
            return;
        }
        running.insert(actor.clone(), false);
    }
    let inner2 = inner.clone();
    inner.rt.spawn(super::runner::run_actor(inner2, actor));
}

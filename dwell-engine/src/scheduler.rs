//! The scheduler: one turn at a time per actor, many actors in parallel.
//!
//! An actor is either idle (absent from the map) or has exactly one runner task. Mail
//! reaches a runner two ways:
//! - durable mail (timers, messages from other actors, HTTP results, anything enqueued
//!   through the store) is announced by [`Scheduler::notify`], which sets the runner's `more` flag
//!   so it reads the mailbox once more before it retires;
//! - ingress hands calls and events straight to the runner with [`Scheduler::offer`], in memory and
//!   not yet durable; the runner runs them and the writer commits each message together
//!   with its turn (see `store::InlineTurn`). Only a runner that keeps up gets them, and
//!   its in-memory inbox is bounded: otherwise ingress enqueues durably, and the caller
//!   hears as soon as the message is on disk rather than after a backlog of turns.
//!
//! Both flags are checked under the map's lock when a runner retires, which closes the
//! race between "nothing left" and "something just arrived". A semaphore bounds how many
//! runners work at once.
//!
//! The scheduler only keeps this book: it never starts a runner itself. `notify` and
//! `offer` answer [`Start::Runner`] when the actor was idle, and the caller (the runner
//! module's `wake` and `offer`) spawns it, so the scheduler can be tested on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::domain::{ActorId, TenantId};
use crate::store::{EnqueueDone, EnqueueRequest};

/// Messages waiting in one runner's in-memory inbox before ingress falls back to the
/// durable mailbox.
pub const INBOX: usize = 128;

/// A call or event handed to a runner before it is durable, or a due timer handed to it
/// before it is fired into the mailbox.
pub struct Inbound {
    pub req: EnqueueRequest,
    /// A timer's due time (the message is that timer's).
    pub timer: Option<crate::domain::UnixMs>,
    pub done: EnqueueDone,
}

struct Slot {
    /// Durable mail arrived since the runner last read its mailbox.
    more: bool,
    inbox: Vec<Inbound>,
    /// The runner keeps up: its last batch had no mailbox backlog, no failed turn and
    /// was quick. Only then does ingress hand it messages in memory; otherwise callers
    /// would wait for turns, not just for durability.
    inline_ok: bool,
    /// Woken when something arrives, for a runner waiting on its last commit.
    wake: Arc<tokio::sync::Notify>,
}

impl Slot {
    fn new(inline_ok: bool) -> Self {
        Slot {
            more: false,
            inbox: Vec::new(),
            inline_ok,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// A module whose turns take longer than this on average (or that has not run yet) has
/// its calls and events enqueued durably: a caller should not wait for slow turns.
const QUICK: Duration = Duration::from_millis(5);

pub struct Scheduler {
    running: Mutex<HashMap<ActorId, Slot>>,
    /// Moving average of turn times per (tenant, module name).
    pace: Mutex<HashMap<TenantId, HashMap<String, Duration>>>,
    pub(super) permits: Arc<Semaphore>,
    /// Turns executing at once on the node (one per core).
    pub(super) exec_slots: Arc<Semaphore>,
}

/// What the caller of [`Scheduler::notify`] or [`Scheduler::offer`] must do.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Start {
    /// The actor was idle: start its runner (it is now marked running).
    Runner,
    /// Its runner is running and was told.
    Nothing,
}

impl Scheduler {
    pub fn new(max_active: usize) -> Self {
        Scheduler {
            running: Mutex::new(HashMap::new()),
            pace: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_active.max(1))),
            exec_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Slot>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Actors with a runner, and the messages waiting in their in-memory inboxes (for
    /// the metrics; walks the book, so only when scraped).
    pub(super) fn load(&self) -> (usize, usize) {
        let running = self.lock();
        let inbox = running.values().map(|s| s.inbox.len()).sum();
        (running.len(), inbox)
    }

    /// The runner takes what arrived: up to `max` inbound messages, and whether durable
    /// mail was announced (the flag is cleared).
    pub(super) fn take(&self, actor: &ActorId, max: usize) -> (Vec<Inbound>, bool) {
        let mut running = self.lock();
        let Some(slot) = running.get_mut(actor) else {
            return (Vec::new(), false);
        };
        let more = std::mem::take(&mut slot.more);
        let inbox = if slot.inbox.len() <= max {
            std::mem::take(&mut slot.inbox)
        } else {
            slot.inbox.drain(..max).collect()
        };
        (inbox, more)
    }

    /// Record how long a turn of an actor's module took (failed turns too).
    pub(super) fn record_turn(&self, actor: &ActorId, took: Duration) {
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        let modules = match pace.get_mut(&actor.tenant) {
            Some(m) => m,
            None => pace.entry(actor.tenant.clone()).or_default(),
        };
        match modules.get_mut(&actor.module) {
            Some(avg) => *avg = (*avg * 7 + took) / 8,
            None => {
                modules.insert(actor.module.clone(), took);
            }
        }
    }

    /// Forget a deleted tenant's turn times.
    pub(super) fn forget_tenant(&self, tenant: &TenantId) {
        let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.remove(tenant);
    }

    /// Whether the module's turns are known to be quick.
    pub(super) fn quick(&self, actor: &ActorId) -> bool {
        let pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
        pace.get(&actor.tenant)
            .and_then(|m| m.get(&actor.module))
            .is_some_and(|avg| *avg < QUICK)
    }

    /// What wakes the actor's runner when something arrives.
    pub(super) fn waker(&self, actor: &ActorId) -> Option<Arc<tokio::sync::Notify>> {
        self.lock().get(actor).map(|s| s.wake.clone())
    }

    /// The runner says whether it keeps up (see `Slot::inline_ok`).
    pub(super) fn keeps_up(&self, actor: &ActorId, ok: bool) {
        if let Some(slot) = self.lock().get_mut(actor) {
            slot.inline_ok = ok;
        }
    }

    /// Called by a runner that found nothing to do: retire unless something arrived
    /// meanwhile.
    pub(super) fn retire(&self, actor: &ActorId) -> bool {
        let mut running = self.lock();
        match running.get(actor) {
            Some(slot) if slot.more || !slot.inbox.is_empty() => false,
            _ => {
                running.remove(actor);
                true
            }
        }
    }

    /// An actor has new durable mail: mark it running, or tell its runner to look again.
    pub fn notify(&self, actor: &ActorId) -> Start {
        let mut running = self.lock();
        if let Some(slot) = running.get_mut(actor) {
            slot.more = true;
            slot.wake.notify_one();
            return Start::Nothing;
        }
        running.insert(actor.clone(), Slot::new(false));
        Start::Runner
    }

    /// Hand a call or event to its actor's runner (marking the actor running if it was
    /// idle). Gives the message back when the actor's module has not shown quick turns,
    /// when its runner does not keep up, or when its inbox is full.
    pub fn offer(&self, msg: Inbound) -> Result<Start, Box<Inbound>> {
        let actor = msg.req.actor.clone();
        if !self.quick(&actor) {
            return Err(Box::new(msg));
        }
        let mut running = self.lock();
        if let Some(slot) = running.get_mut(&actor) {
            if !slot.inline_ok || slot.inbox.len() >= INBOX {
                return Err(Box::new(msg));
            }
            slot.inbox.push(msg);
            slot.wake.notify_one();
            return Ok(Start::Nothing);
        }
        let mut slot = Slot::new(true);
        slot.inbox.push(msg);
        running.insert(actor, slot);
        Ok(Start::Runner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Envelope, MessageKind};

    fn actor(key: &str) -> ActorId {
        ActorId::new(TenantId::default_tenant(), "m", key)
    }

    fn inbound(a: &ActorId) -> Inbound {
        let (done, _) = tokio::sync::oneshot::channel();
        let req = EnqueueRequest {
            actor: a.clone(),
            envelope: Envelope {
                kind: MessageKind::Event,
                body: Vec::new(),
                enqueued_ms: 0,
                trace: None,
            },
            request: None,
            idempotency: None,
        };
        Inbound {
            req,
            timer: None,
            done,
        }
    }

    #[test]
    fn durable_mail_starts_one_runner_and_then_only_flags_it() {
        let s = Scheduler::new(4);
        let a = actor("a");
        assert_eq!(s.notify(&a), Start::Runner);
        assert_eq!(s.notify(&a), Start::Nothing);
        assert_eq!(
            s.notify(&actor("b")),
            Start::Runner,
            "actors are independent"
        );
        // The runner reads the flag once; it cannot retire while mail is announced.
        assert!(!s.retire(&a));
        assert!(s.take(&a, 10).1);
        assert!(!s.take(&a, 10).1, "the flag is cleared by the take");
        assert!(s.retire(&a));
        assert_eq!(s.notify(&a), Start::Runner, "a retired actor is idle again");
    }

    #[test]
    fn ingress_hands_messages_only_to_quick_modules_and_keeping_up_runners() {
        let s = Scheduler::new(4);
        let a = actor("a");
        // Unknown pace: the message goes to the durable mailbox.
        assert!(s.offer(inbound(&a)).is_err());
        s.record_turn(&a, Duration::from_millis(50));
        assert!(s.offer(inbound(&a)).is_err(), "slow module");
        for _ in 0..40 {
            s.record_turn(&a, Duration::from_micros(100));
        }
        assert!(s.quick(&a));
        assert_eq!(s.offer(inbound(&a)).ok(), Some(Start::Runner));
        assert_eq!(s.offer(inbound(&a)).ok(), Some(Start::Nothing));
        let (got, more) = s.take(&a, 1);
        assert_eq!((got.len(), more), (1, false));
        assert!(!s.retire(&a), "one message is still in the inbox");
        assert_eq!(s.take(&a, 10).0.len(), 1);
        // A runner that does not keep up gets nothing in memory.
        s.keeps_up(&a, false);
        assert!(s.offer(inbound(&a)).is_err());
        s.keeps_up(&a, true);
        for _ in 0..INBOX {
            assert!(s.offer(inbound(&a)).is_ok());
        }
        assert!(s.offer(inbound(&a)).is_err(), "the inbox is bounded");
        // A deleted tenant's pace is forgotten.
        s.forget_tenant(&a.tenant);
        assert!(!s.quick(&a));
    }

    #[test]
    fn a_runner_started_by_durable_mail_gets_no_memory_messages_until_it_keeps_up() {
        let s = Scheduler::new(4);
        let a = actor("a");
        s.record_turn(&a, Duration::from_micros(100));
        assert_eq!(s.notify(&a), Start::Runner);
        assert!(s.offer(inbound(&a)).is_err());
        s.keeps_up(&a, true);
        assert_eq!(s.offer(inbound(&a)).ok(), Some(Start::Nothing));
    }
}

//! The timer worker. It keeps the timers due within the next second in memory (loaded
//! from the `(due, actor, name)` table by range, never by a scan of everything, and kept
//! current by the writer's notices), sleeps until the earliest is due, and hands each due
//! timer to its actor's runner, which commits the timer's turn together with its removal
//! from the table (see `store::InlineTurn`): one commit per timer turn, none to fire it.
//! A timer whose runner cannot take it now is moved into the mailbox instead (fired), and
//! as a safety net anything still in the table two seconds after it was due is fired too.
//! Either way the writer's check makes a timer fire exactly once, and only if it is still
//! pending (a cancelled or replaced timer never fires). A timer is never handed over
//! before its due time; one due while the server was down fires right after start.
//!
//! Also the periodic housekeeping: purging expired idempotency keys and returning freed
//! memory to the OS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::{ActorId, Envelope, MessageKind, UnixMs};
use crate::store::{EnqueueRequest, TimerKey};

use super::Inner;
use super::runner;
use super::scheduler::Inbound;

/// How far ahead timers are loaded into memory.
const LOOKAHEAD_MS: u64 = 1000;
/// Timers read per range query.
const LOAD_BATCH: usize = 4096;
/// Timers kept in memory at most.
const MAX_LOADED: usize = 200_000;
/// A timer still pending this long after its due time is fired into the mailbox.
const STRAGGLER_MS: u64 = 2000;
/// Above every storage key and timer name (both are ASCII below DEL).
const KEY_END: &str = "\u{7f}";

/// The timers due soon, in memory.
#[derive(Default)]
pub(crate) struct Schedule {
    inner: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    due: BTreeMap<TimerKey, Vec<u8>>,
    /// Every pending timer up to this key is in `due` (or has been handed out).
    cursor: Option<TimerKey>,
}

impl Schedule {
    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A timer was committed. Kept if it falls in the loaded range (later ones are loaded
    /// when their time comes). `true` if it is due before anything else loaded.
    pub fn set(&self, key: TimerKey, payload: Vec<u8>) -> bool {
        let mut l = self.lock();
        if l.cursor.as_ref().is_none_or(|c| key > *c) {
            return false;
        }
        let earliest = l.due.first_key_value().is_none_or(|(k, _)| key < *k);
        l.due.insert(key, payload);
        earliest
    }

    /// Forget what is loaded: everything is read again from the table (a cluster node
    /// that gained partitions; overdue timers of those fire at once).
    pub fn reload(&self) {
        let mut l = self.lock();
        l.due.clear();
        l.cursor = None;
    }

    /// Timers held in memory (for the metrics).
    pub fn loaded(&self) -> usize {
        self.lock().due.len()
    }

    /// A timer was cancelled, replaced or fired.
    pub fn gone(&self, key: &TimerKey) {
        self.lock().due.remove(key);
    }

    /// Load the pending timers due up to `until` that are not loaded yet. Holds the lock
    /// while it reads, so a notice about a timer committed meanwhile is applied after the
    /// cursor has moved past it (and so kept).
    fn top_up(&self, inner: &Inner, until: UnixMs) -> Result<(), crate::store::Error> {
        let mut l = self.lock();
        if l.cursor.as_ref().is_some_and(|c| c.0 >= until) {
            return Ok(());
        }
        while l.due.len() < MAX_LOADED {
            let batch = inner
                .store
                .timers_after(l.cursor.as_ref(), until, LOAD_BATCH)?;
            let complete = batch.len() < LOAD_BATCH;
            for (key, payload) in batch {
                l.cursor = Some(key.clone());
                // A cluster node loads only its own actors' timers.
                if inner
                    .config
                    .placement
                    .as_ref()
                    .is_none_or(|p| p.local_key(&key.1))
                {
                    l.due.insert(key, payload);
                }
            }
            if complete {
                l.cursor = Some((until, KEY_END.to_owned(), KEY_END.to_owned()));
                break;
            }
        }
        Ok(())
    }

    /// Take every loaded timer due at or before `now`.
    fn take_due(&self, now: UnixMs) -> Vec<(TimerKey, Vec<u8>)> {
        let mut l = self.lock();
        let later = l
            .due
            .split_off(&(now.saturating_add(1), String::new(), String::new()));
        std::mem::replace(&mut l.due, later).into_iter().collect()
    }

    fn next_due(&self) -> Option<UnixMs> {
        self.lock().due.first_key_value().map(|(k, _)| k.0)
    }
}

pub(super) async fn run(inner: Arc<Inner>) {
    let mut last_sweep = 0;
    loop {
        let now = inner.clock.now_ms();
        if let Err(e) = inner.schedule.top_up(&inner, now + LOOKAHEAD_MS) {
            tracing::error!(error = %e, "cannot read timers");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let refused: Vec<TimerKey> = inner
            .schedule
            .take_due(now)
            .into_iter()
            .inspect(|(key, _)| {
                let late = now.saturating_sub(key.0);
                inner.metrics.timer_lateness.observe(late as f64 / 1000.0);
            })
            .filter_map(|(key, payload)| hand_over(&inner, key, payload, now).err())
            .collect();
        if !refused.is_empty()
            && let Err(e) = inner.store.fire_these(refused).await
        {
            tracing::error!(error = %e, "cannot fire timers; the sweep will");
        }
        if now >= last_sweep + STRAGGLER_MS / 2 {
            last_sweep = now;
            sweep(&inner, now).await;
        }
        let next = inner
            .schedule
            .next_due()
            .unwrap_or(u64::MAX)
            .min(now + LOOKAHEAD_MS / 2)
            .min(last_sweep + STRAGGLER_MS / 2);
        if next > inner.clock.now_ms() {
            tokio::select! {
                _ = inner.clock.sleep_until(next) => {}
                _ = inner.timer_wake.notified() => {}
            }
        }
    }
}

/// Hand a due timer to its actor's runner; gives the key back if it cannot take it now.
fn hand_over(
    inner: &Arc<Inner>,
    key: TimerKey,
    payload: Vec<u8>,
    now: UnixMs,
) -> Result<(), TimerKey> {
    let Some(actor) = ActorId::from_storage_key(&key.1) else {
        return Err(key);
    };
    let req = EnqueueRequest {
        actor,
        envelope: Envelope {
            kind: MessageKind::Timer {
                name: key.2.clone(),
            },
            body: payload,
            enqueued_ms: now,
            trace: None,
        },
        request: None,
        idempotency: None,
    };
    // Nobody waits for the answer: the commit itself is the outcome.
    let (done, _) = tokio::sync::oneshot::channel();
    let inbound = Inbound {
        req,
        timer: Some(key.0),
        done,
    };
    runner::offer(inner, inbound).map_err(|_| key)
}

/// The safety net: fire whatever is still pending well after its due time.
async fn sweep(inner: &Arc<Inner>, now: UnixMs) {
    let cutoff = now.saturating_sub(STRAGGLER_MS);
    loop {
        match inner.store.next_timer_due() {
            Ok(Some(due)) if due <= cutoff => {}
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read timers");
                return;
            }
        }
        match inner.store.fire_timers(cutoff, 5000).await {
            // A cluster node fires only its own: the rest are another node's to fire.
            Ok(0) => return,
            Ok(n) => tracing::debug!(fired = n, "overdue timers fired into mailboxes"),
            Err(e) => {
                tracing::error!(error = %e, "cannot fire timers");
                return;
            }
        }
    }
}

pub(super) async fn purge(inner: Arc<Inner>) {
    loop {
        release_free_memory();
        let now = inner.clock.now_ms();
        match inner.store.purge(now, 10_000).await {
            Ok(10_000) => continue,
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired idempotency keys"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot purge idempotency keys"),
        }
        let next = now + inner.config.purge_interval.as_millis() as u64;
        inner.clock.sleep_until(next).await;
    }
}

/// Hand memory the allocator holds but no longer uses back to the OS. After a burst of
/// work (say a million actors created) glibc keeps freed pages in its per-thread arenas;
/// an idle node should not look as big as its busiest minute.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own arenas and releases free pages; it
        // has no preconditions and is safe to call from any thread at any time.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

//! The timer worker: sleeps until the earliest timer is due (the first key of the
//! `(due, actor, name)` table — no scan), then moves every due timer into its actor's
//! mailbox in one transaction. A timer is never fired before its due time; one set while
//! the server was down fires right after start. Also the periodic housekeeping: purging
//! expired idempotency keys and returning freed memory to the OS.

use std::sync::Arc;
use std::time::Duration;

use super::Inner;

/// Timers moved per transaction.
const FIRE_BATCH: usize = 5000;

pub(super) async fn run(inner: Arc<Inner>) {
    loop {
        let now = inner.clock.now_ms();
        let wait = match inner.store.next_timer_due() {
            Ok(Some(due)) if due <= now => {
                if let Err(e) = inner.store.fire_timers(now, FIRE_BATCH).await {
                    tracing::error!(error = %e, "cannot fire timers");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            Ok(Some(due)) => Duration::from_millis(due - now),
            Ok(None) => Duration::from_secs(60),
            Err(e) => {
                tracing::error!(error = %e, "cannot read timers");
                Duration::from_millis(200)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.timer_wake.notified() => {}
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
        tokio::time::sleep(inner.config.purge_interval).await;
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

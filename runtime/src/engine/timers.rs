//! The timer worker: sleeps until the earliest timer is due (the first key of the
//! `(due, actor, name)` table — no scan), then moves every due timer into its actor's
//! mailbox in one transaction. A timer is never fired before its due time; one set while
//! the server was down fires right after start. Also purges expired idempotency keys.

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

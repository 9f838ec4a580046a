//! The engine's clocks: [`SystemClock`] for production and [`ManualClock`], which only
//! moves when told to, for tests of timers, backoff and expiry without sleeping.
//!
//! Everything in the engine that waits for a *time* (a timer's due time, a retry's or a
//! delivery's backoff, the next purge of idempotency keys) waits through
//! [`Clock::sleep_until`]; waits that bound an operation (a sync call's wait, a probe's
//! deadline) stay on tokio's timer.

use std::time::Duration;

use tokio::sync::watch;

use crate::domain::{Clock, Sleep, UnixMs, system_now_ms};

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMs {
        system_now_ms()
    }

    fn sleep_until(&self, at: UnixMs) -> Sleep {
        let wait = at.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it; sleepers wake as
/// soon as it passes their time.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<UnixMs>,
}

impl ManualClock {
    pub fn new(start: UnixMs) -> Self {
        ManualClock {
            now: watch::Sender::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|n| *n += by.as_millis() as u64);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMs {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: UnixMs) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // An error means the clock is gone: nothing will ever wake this sleeper.
            if rx.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_moved_past_their_time() {
        let clock = ManualClock::new(1_000);
        let mut sleep = clock.sleep_until(1_500);
        assert!(!poll(&mut sleep), "not yet");
        clock.advance(Duration::from_millis(499));
        assert!(!poll(&mut sleep), "one millisecond early");
        clock.advance(Duration::from_millis(1));
        assert!(poll(&mut sleep), "due");
        assert!(poll(&mut clock.sleep_until(0)), "a time passed is at once");
    }

    /// Poll once; whether it finished.
    fn poll(s: &mut Sleep) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        s.as_mut().poll(&mut cx).is_ready()
    }
}

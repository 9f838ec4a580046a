//! Policies: how failed turns are retried, and the limits every guest and request obeys.

use std::time::Duration;

/// Retry policy for a turn that traps (or runs out of time or memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after `attempt` failures (1-based):
    /// doubling from `initial_backoff`, capped at `max_backoff`. `None` once the
    /// attempts are spent: dead-letter the message.
    pub fn backoff_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        Some(
            self.initial_backoff
                .saturating_mul(factor)
                .min(self.max_backoff),
        )
    }
}

/// Bounds on what one guest turn and one request may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one turn may run before it is interrupted.
    pub turn_time: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Size of a state snapshot a turn may return.
    pub state_bytes: usize,
    /// Size of one message body (HTTP or guest-produced).
    pub message_bytes: usize,
    /// Effects one turn may record.
    pub effects_per_turn: usize,
    /// Pending timers per actor.
    pub timers_per_actor: usize,
    /// Size of an uploaded module.
    pub module_bytes: usize,
    /// Guest log lines one turn may write, and their bytes; past either, the turn's
    /// further lines are counted, not written.
    pub log_lines_per_turn: usize,
    pub log_bytes_per_turn: usize,
    /// Guest log bytes per second across all of a tenant's turns (burst: four seconds'
    /// worth).
    pub log_bytes_per_second: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            turn_time: Duration::from_millis(1000),
            memory_bytes: 64 << 20,
            state_bytes: 4 << 20,
            message_bytes: 1 << 20,
            effects_per_turn: 1000,
            timers_per_actor: 1000,
            module_bytes: 64 << 20,
            log_lines_per_turn: 32,
            log_bytes_per_turn: 8 << 10,
            log_bytes_per_second: 64 << 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_gives_up() {
        let p = RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(25),
        };
        assert_eq!(p.backoff_after(1), Some(Duration::from_millis(10)));
        assert_eq!(p.backoff_after(2), Some(Duration::from_millis(20)));
        assert_eq!(p.backoff_after(3), Some(Duration::from_millis(25)));
        assert_eq!(p.backoff_after(4), None);
    }
}

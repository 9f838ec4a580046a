//! Polling with a deadline: wait for an observable condition instead of sleeping for a
//! guessed time (STYLE: deterministic tests).

use std::time::{Duration, Instant};

/// How often the condition is checked.
const INTERVAL: Duration = Duration::from_millis(20);

/// Check `check` until it returns `Some` (that value), or `None` once `timeout` has
/// passed. It is checked at least once, and once more after the deadline.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_is_returned_and_a_timeout_is_none() {
        let mut n = 0;
        let v = eventually(Duration::from_secs(10), || {
            n += 1;
            (n == 3).then_some(n * 10)
        });
        assert_eq!(v, Some(30));
        assert_eq!(eventually(Duration::from_millis(50), || None::<()>), None);
    }
}

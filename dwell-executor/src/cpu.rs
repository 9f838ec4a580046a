//! The CPU time a turn has used, for its time budget. A wall-clock budget would charge a
//! turn for time it spent waiting for a core — unfair to a turn on the low-priority slow
//! lane whenever the node is busy — so the budget counts the executing thread's CPU time,
//! read at every epoch tick. A turn that moves to another worker thread when it yields
//! loses at most one tick of accounting.

use std::thread::ThreadId;
use std::time::Duration;

#[derive(Debug, Default)]
pub(super) struct CpuMeter {
    thread: Option<ThreadId>,
    last: Duration,
    used: Duration,
}

impl CpuMeter {
    /// Start counting for a new turn, on the calling thread.
    pub fn start(&mut self) {
        self.thread = Some(std::thread::current().id());
        self.last = thread_cpu_time();
        self.used = Duration::ZERO;
    }

    /// Add the CPU time used on this thread since the last reading; returns the total.
    pub fn tick(&mut self) -> Duration {
        let now = thread_cpu_time();
        let here = std::thread::current().id();
        if self.thread == Some(here) {
            self.used += now.saturating_sub(self.last);
        }
        self.thread = Some(here);
        self.last = now;
        self.used
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cpu_used_not_time_asleep() {
        let mut m = CpuMeter::default();
        m.start();
        std::thread::sleep(Duration::from_millis(50));
        assert!(m.tick() < Duration::from_millis(20), "sleeping uses no CPU");
        // Spinning does, and never more than the time that passed.
        let spin = std::time::Instant::now();
        let mut used = m.tick();
        while used < Duration::from_millis(10) && spin.elapsed() < Duration::from_secs(5) {
            std::hint::black_box(0u64);
            used = m.tick();
        }
        assert!(used >= Duration::from_millis(10), "spinning uses CPU");
        assert!(used <= spin.elapsed() + Duration::from_millis(5));
    }
}

//! Where turns execute. A turn of a module whose turns are quick runs right on the
//! engine's runtime, next to ingress and the runners. A turn of a module known to be slow
//! (its turns average more than a few milliseconds, as a guest that burns its whole time
//! budget does) runs on the *slow lane*: a few worker threads at a lower OS priority
//! (nice 10). Both lanes are bounded by the same per-tenant permits and per-core slots,
//! so a slow tenant still gets its share of the CPU — but when the cores are contended,
//! the threads that answer other tenants' quick calls are scheduled first, and a noisy
//! tenant's heavy turns cannot stretch everyone else's latency.

use std::sync::OnceLock;

/// The slow lane's runtime: process-wide and never dropped (a tokio runtime must not be
/// dropped from async code, and the engine lives until the process ends).
fn slow_lane() -> &'static tokio::runtime::Runtime {
    static LANE: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    LANE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_time()
            .thread_name("dwell-slow-lane")
            .on_thread_start(lower_priority)
            .build()
            .expect("start the slow lane's threads")
    })
}

/// Run `turn` on the slow lane and wait for it.
pub(super) async fn run_slow<F>(turn: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    slow_lane()
        .spawn(turn)
        .await
        .map_err(|e| format!("the turn's task failed: {e}"))
}

/// Lower the calling thread's scheduling priority (on Linux, nice applies per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the calling
        // thread's nice value; it touches no memory of ours.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if rc != 0 {
            tracing::debug!("could not lower the slow lane's priority");
        }
    }
}

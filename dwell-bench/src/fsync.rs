//! The disk's fsync latency: a probe before the run and a monitor sampling it while the
//! scenarios run, so that latency tails can be set against the disk's stalls.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{pct, us};

/// How long an fsync of a 4 KiB write takes in `dir` (the disk the data lives on): 200
/// rounds, or fewer if they take more than 10 s.
pub(crate) fn fsync_probe(dir: &Path) -> Value {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe");
    let run = || -> io::Result<Vec<u32>> {
        let f = std::fs::File::create(&path)?;
        let page = [0x5au8; 4096];
        let t_end = Instant::now() + Duration::from_secs(10);
        let mut lat = Vec::with_capacity(200);
        for i in 0..200u64 {
            if Instant::now() > t_end {
                break;
            }
            f.write_all_at(&page, (i % 64) * 4096)?;
            let t0 = Instant::now();
            f.sync_all()?;
            lat.push(us(t0.elapsed()));
        }
        Ok(lat)
    };
    let r = run();
    let _ = std::fs::remove_file(&path);
    match r {
        Ok(mut lat) => {
            lat.sort_unstable();
            json!({
                "rounds": lat.len(),
                "p50_ms": pct(&lat, 0.5) as f64 / 1000.0,
                "p99_ms": pct(&lat, 0.99) as f64 / 1000.0,
                "max_ms": lat.last().copied().unwrap_or(0) as f64 / 1000.0,
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// Samples the disk while the bench runs: one fsync of a 4 KiB write every 100 ms, in a
/// thread of its own, so that latency tails can be set against the disk's stalls.
pub(crate) struct FsyncMonitor {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Instant, u32)>>,
}

pub(crate) struct FsyncSamples(Vec<(Instant, u32)>);

impl FsyncMonitor {
    pub(crate) fn start(dir: &Path) -> FsyncMonitor {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let path = dir.join("fsync-monitor");
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let mut samples = Vec::new();
            let Ok(f) = std::fs::File::create(&path) else {
                return samples;
            };
            let page = [0xa5u8; 4096];
            // At most a day of samples.
            for i in 0..864_000u64 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if f.write_all_at(&page, (i % 64) * 4096).is_ok() {
                    let t0 = Instant::now();
                    if f.sync_all().is_ok() {
                        samples.push((t0, us(t0.elapsed())));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::fs::remove_file(&path);
            samples
        });
        FsyncMonitor { stop, handle }
    }

    pub(crate) fn stop(self) -> FsyncSamples {
        self.stop.store(true, Ordering::Relaxed);
        FsyncSamples(self.handle.join().unwrap_or_default())
    }
}

impl FsyncSamples {
    pub(crate) fn window(&self, from: Instant, to: Instant) -> Value {
        let mut lat: Vec<u32> = self
            .0
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, l)| *l)
            .collect();
        lat.sort_unstable();
        json!({
            "samples": lat.len(),
            "p50_ms": pct(&lat, 0.5) as f64 / 1000.0,
            "p99_ms": pct(&lat, 0.99) as f64 / 1000.0,
            "max_ms": lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        })
    }
}

//! Load generation: closed and open loops over worker threads with one connection each,
//! what they measured (`Load`), and polling actors until they are done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::client::{Client, Target};
use crate::util::{pct, us};

#[derive(Default)]
pub(crate) struct Load {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) first_errors: Vec<String>,
    pub(crate) lat_us: Vec<u32>,
    pub(crate) elapsed: Duration,
    timed_out: bool,
    retries: u64,
    connects: u64,
}

impl Load {
    fn merge(parts: Vec<Load>, elapsed: Duration) -> Load {
        let mut all = Load {
            elapsed,
            ..Load::default()
        };
        for p in parts {
            all.ok += p.ok;
            all.errors += p.errors;
            all.timed_out |= p.timed_out;
            all.retries += p.retries;
            all.connects += p.connects;
            all.lat_us.extend(p.lat_us);
            for e in p.first_errors {
                if all.first_errors.len() < 5 {
                    all.first_errors.push(e);
                }
            }
        }
        all.lat_us.sort_unstable();
        all
    }

    fn record(&mut self, r: Result<(), String>, lat: Duration) {
        match r {
            Ok(()) => {
                self.ok += 1;
                self.lat_us.push(us(lat));
            }
            Err(e) => {
                self.errors += 1;
                if self.first_errors.len() < 3 {
                    self.first_errors.push(e);
                }
            }
        }
    }

    pub(crate) fn per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn latency_json(&self) -> Value {
        let l = &self.lat_us;
        json!({
            "p50_ms": pct(l, 0.50) as f64 / 1000.0,
            "p99_ms": pct(l, 0.99) as f64 / 1000.0,
            "p999_ms": pct(l, 0.999) as f64 / 1000.0,
            "max_ms": l.last().copied().unwrap_or(0) as f64 / 1000.0,
        })
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "ok": self.ok,
            "errors": self.errors,
            "first_errors": self.first_errors,
            "seconds": self.elapsed.as_secs_f64(),
            "per_s": self.per_s(),
            "latency": self.latency_json(),
            "timed_out": self.timed_out,
            "client_retries": self.retries,
            "client_connects": self.connects,
        })
    }

    /// Failures to report: errors and a missed deadline.
    pub(crate) fn problems(&self, what: &str, expected: u64) -> Vec<String> {
        let mut p = Vec::new();
        if self.errors > 0 {
            p.push(format!(
                "{what}: {} of {expected} operations failed, e.g. {:?}",
                self.errors, self.first_errors
            ));
        }
        if self.ok + self.errors < expected {
            p.push(format!(
                "{what}: only {} of {expected} operations ran before the deadline",
                self.ok + self.errors
            ));
        }
        p
    }
}

/// `threads` workers, each with its own connection, take operation indices `0..total`
/// until they run out or `deadline` passes. `make(worker)` builds a worker's operation.
pub(crate) fn closed_loop<F, G>(
    t: &Target,
    threads: usize,
    total: u64,
    deadline: Instant,
    make: F,
) -> Load
where
    F: Fn(usize) -> G + Sync,
    G: FnMut(u64, &mut Client) -> Result<(), String>,
{
    closed_loop_over(std::slice::from_ref(t), threads, total, deadline, make)
}

/// [`closed_loop`] over several servers: worker `w` connects to `targets[w % len]`.
pub(crate) fn closed_loop_over<F, G>(
    targets: &[Target],
    threads: usize,
    total: u64,
    deadline: Instant,
    make: F,
) -> Load
where
    F: Fn(usize) -> G + Sync,
    G: FnMut(u64, &mut Client) -> Result<(), String>,
{
    let next = AtomicU64::new(0);
    let start = Instant::now();
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|w| {
                let (make, next) = (&make, &next);
                s.spawn(move || {
                    let mut op = make(w);
                    let mut client = targets[w % targets.len()].client();
                    let mut part = Load::default();
                    loop {
                        if Instant::now() > deadline {
                            part.timed_out = true;
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let t0 = Instant::now();
                        let r = op(i, &mut client);
                        part.record(r, t0.elapsed());
                    }
                    part.retries = client.retries();
                    part.connects = client.connects();
                    part
                })
            })
            .collect();
        join_all(handles)
    });
    Load::merge(parts, start.elapsed())
}

/// Open loop: operation `i` is due at `start + i / rate`; a free worker sends it then (or
/// late, when every worker is busy). Latency counts from the due time.
pub(crate) fn open_loop<F, G>(
    t: &Target,
    threads: usize,
    rate: f64,
    total: u64,
    deadline: Instant,
    make: F,
) -> Load
where
    F: Fn(usize) -> G + Sync,
    G: FnMut(u64, &mut Client) -> Result<(), String>,
{
    let next = AtomicU64::new(0);
    let start = Instant::now() + Duration::from_millis(100);
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|w| {
                let (make, next) = (&make, &next);
                s.spawn(move || {
                    let mut op = make(w);
                    let mut client = t.client();
                    let mut part = Load::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if due > deadline {
                            part.timed_out = true;
                            break;
                        }
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let r = op(i, &mut client);
                        part.record(r, due.elapsed());
                    }
                    part.retries = client.retries();
                    part.connects = client.connects();
                    part
                })
            })
            .collect();
        join_all(handles)
    });
    Load::merge(parts, start.elapsed())
}

fn join_all(handles: Vec<std::thread::ScopedJoinHandle<'_, Load>>) -> Vec<Load> {
    handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| Load {
                errors: 1,
                first_errors: vec!["a load worker panicked".into()],
                ..Load::default()
            })
        })
        .collect()
}

/// One actor's poll: its index and what `check` made of it (`None`: not done yet).
type Polled<T> = (usize, Result<Option<T>, String>);

/// GET every path, again and again for those not done yet, until `check` returns `Some`
/// for all of them or `deadline` passes. Returns the values `check` produced, by index.
pub(crate) fn poll_until<T, F>(
    t: &Target,
    paths: &[String],
    threads: usize,
    deadline: Instant,
    check: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, &Value) -> Option<T> + Sync,
{
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(paths.len()).collect();
    let mut pending: Vec<usize> = (0..paths.len()).collect();
    let mut last_error = None;
    for pass in 0..100_000u32 {
        let pass_start = Instant::now();
        let chunk = pending.len().div_ceil(threads.max(1)).max(1);
        let results: Vec<Vec<Polled<T>>> = std::thread::scope(|s| {
            let handles: Vec<_> = pending
                .chunks(chunk)
                .map(|ids| {
                    let check = &check;
                    s.spawn(move || {
                        let mut c = t.client();
                        ids.iter()
                            .map(|&i| {
                                let r = c.get_json(&paths[i]).map(|v| v.and_then(|v| check(i, &v)));
                                (i, r)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut still = Vec::new();
        for (i, r) in results.into_iter().flatten() {
            match r {
                Ok(Some(v)) => out[i] = Some(v),
                Ok(None) => still.push(i),
                Err(e) => {
                    last_error = Some(e);
                    still.push(i);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(out.into_iter().map(|v| v.expect("filled")).collect());
        }
        if Instant::now() > deadline {
            bail!(
                "after {pass} polls, {} of {} actors are still not done (e.g. {}); last error: {:?}",
                pending.len(),
                paths.len(),
                paths[pending[0]],
                last_error
            );
        }
        // A pass over many actors loads the server; space passes out so that polling
        // takes at most about a fifth of the time.
        let pause = Duration::from_millis(if pending.len() < 100 { 50 } else { 200 });
        std::thread::sleep(pause.max(pass_start.elapsed() * 4));
    }
    bail!("polling did not finish")
}

pub(crate) fn state_i64(v: &Value, field: &str) -> Option<i64> {
    v.get("state")?.get(field)?.as_i64()
}

pub(crate) fn drained(v: &Value) -> bool {
    v.get("mailbox_depth").and_then(Value::as_u64) == Some(0)
}

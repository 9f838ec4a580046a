//! `dwell-bench`: the benchmark behind README's "Performance" section.
//!
//! It starts a release `dwell serve` as a child process on `127.0.0.1:0` with a fresh data
//! directory, deploys the `counter` and `ticker` guests over the API and drives the server
//! over loopback HTTP with a bounded load generator: a fixed number of threads, each with
//! one keep-alive connection (a small raw HTTP/1.1 client by default, `--client ureq` for
//! ureq). Scenarios (select with `--only events,sync,...`):
//!
//! 1. `events` — durable one-way events into many distinct actors; acknowledged and
//!    applied events/s; every actor's total is checked.
//! 2. `sync` — request/reply calls to distinct actors at each `--concurrency`; calls/s and
//!    latency percentiles; every reply is checked.
//! 3. `hot` — the same against one actor; the replies must be exactly 1..=N.
//! 4. `rate` — open-loop calls at half the best rate of `sync`; latency measured from the
//!    scheduled send time (no coordinated omission).
//! 5. `timers` — the `ticker` guest sets many timers due within a few seconds; lateness as
//!    recorded by the guest (turn start minus due time); each timer must fire exactly once.
//! 6. `idle` — many actors with one event each: server RSS, data-file size, then a SIGTERM
//!    and a restart on the same data, timed until the first served call.
//! 7. `engine` — the engine in-process (no HTTP): events in, turns applied per second.
//!
//! Every loop has a count and a deadline. The bench only binds and connects to
//! `127.0.0.1`, only signals the server processes it started, and exits non-zero when a
//! check fails. It builds nothing: run `scripts/bench.sh`, which builds the release binary
//! and the guests first. A markdown table is printed; the figures and their conditions
//! are written as JSON (`--json`, default `target/bench.json`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

use dwell::domain::{ActorId, TenantId};
use dwell::engine::{Engine, EngineConfig};

const ALL: &[&str] = &["events", "sync", "hot", "rate", "timers", "idle", "engine"];
const ADD_ONE: &[u8] = br#"{"add":1}"#;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "dwell-bench",
    about = "Benchmark a release dwell server over loopback HTTP (and the engine in-process)"
)]
struct Args {
    /// Use the issue's full sizes (takes many minutes) instead of the quick ones.
    #[arg(long)]
    full: bool,
    /// Scenarios to run, comma separated: events,sync,hot,rate,timers,idle,engine.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/bench.json")]
    json: PathBuf,
    /// The server binary (release).
    #[arg(long, default_value = "target/release/dwell")]
    dwell: PathBuf,
    /// Directory holding counter.wasm and ticker.wasm.
    #[arg(long, default_value = "target/guests/wasm32-wasip2/guest")]
    guests: PathBuf,
    /// Parent directory of the fresh data directories (default: the system temp dir).
    #[arg(long)]
    data_parent: Option<PathBuf>,
    /// Keep the data directories after the run.
    #[arg(long)]
    keep_data: bool,
    /// HTTP client of the load generator.
    #[arg(long, value_enum, default_value_t = ClientKind::Raw)]
    client: ClientKind,
    /// `--http-workers` of the server (default: the server's default).
    #[arg(long)]
    http_workers: Option<usize>,
    /// `DWELL_LOG` of the server (its log goes to `<data>/server.log`).
    #[arg(long, default_value = "warn")]
    server_log: String,
    /// Deadline of one scenario's load and of its wait for the actors, in seconds.
    #[arg(long, default_value_t = 900)]
    scenario_timeout_s: u64,

    /// Events in scenario `events` (quick 20,000; full 200,000).
    #[arg(long)]
    events: Option<u64>,
    /// Distinct actors the events go to.
    #[arg(long, default_value_t = 10_000)]
    event_actors: u64,
    /// Connections sending events (scenarios `events` and `idle`).
    #[arg(long, default_value_t = 64)]
    event_concurrency: usize,
    /// Calls per concurrency level in `sync` (quick 5,000; full 100,000).
    #[arg(long)]
    sync_calls: Option<u64>,
    /// Concurrency levels of `sync` and `hot`.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    concurrency: Vec<usize>,
    /// Calls per concurrency level in `hot` (quick 3,000; full 50,000).
    #[arg(long)]
    hot_calls: Option<u64>,
    /// Seconds of fixed-rate load in `rate` (quick 5; full 30).
    #[arg(long)]
    rate_secs: Option<f64>,
    /// Calls/s of `rate` (default: half the best calls/s measured in `sync`).
    #[arg(long)]
    rate: Option<f64>,
    /// Timers in `timers` (quick 10,000; full 100,000).
    #[arg(long)]
    timers: Option<u64>,
    /// Actors the timers are spread over.
    #[arg(long, default_value_t = 1_000)]
    timer_actors: u64,
    /// Delay from the start of the scenario to the first due time (quick 3,000; full 6,000).
    #[arg(long)]
    timer_lead_ms: Option<u64>,
    /// Due times are spread evenly over this many milliseconds.
    #[arg(long, default_value_t = 3_000)]
    timer_spread_ms: u64,
    /// Idle actors in `idle` (quick 100,000; full 1,000,000).
    #[arg(long)]
    idle_actors: Option<u64>,
    /// Events in `engine` (quick 20,000; full 200,000).
    #[arg(long)]
    engine_events: Option<u64>,
    /// Distinct actors in `engine`.
    #[arg(long, default_value_t = 10_000)]
    engine_actors: u64,
    /// Concurrent senders (tokio tasks) in `engine`.
    #[arg(long, default_value_t = 256)]
    engine_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientKind {
    Raw,
    Ureq,
}

// ---------------------------------------------------------------------------------------
// Small helpers

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate_str(per_s: f64) -> String {
    if per_s >= 100.0 {
        int(per_s.round() as u64)
    } else {
        format!("{per_s:.1}")
    }
}

fn ms_str(us: u32) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// Percentile `q` (0..1) of sorted values.
fn pct<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn body_text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(300).collect()
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// HTTP clients

/// A minimal HTTP/1.1 keep-alive client over one `TcpStream` (no pipelining).
struct RawConn {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    last_used: Instant,
    retries: u64,
    connects: u64,
}

impl RawConn {
    fn new(addr: SocketAddr) -> Self {
        RawConn {
            addr,
            conn: None,
            last_used: Instant::now(),
            retries: 0,
            connects: 0,
        }
    }

    fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        self.conn = Some(BufReader::with_capacity(16 * 1024, s));
        self.connects += 1;
        Ok(())
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        // The server closes keep-alive connections idle for 5 s; do not race it.
        if self.last_used.elapsed() > Duration::from_secs(2) {
            self.conn = None;
        }
        let mut msg = Vec::with_capacity(160 + body.len());
        write!(
            msg,
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n",
            body.len()
        )?;
        for (k, v) in headers {
            write!(msg, "{k}: {v}\r\n")?;
        }
        msg.extend_from_slice(b"\r\n");
        msg.extend_from_slice(body);
        let fresh = self.conn.is_none();
        if fresh {
            self.connect()?;
        }
        let result = self.exchange(&msg);
        let result = match result {
            // A reused connection the server had already closed (it closes idle ones):
            // the request was not processed; send it once more on a new connection. A
            // request processed twice would show up in the totals the scenarios check.
            Err((_, false)) if !fresh => {
                self.retries += 1;
                self.connect()?;
                self.exchange(&msg)
            }
            r => r,
        };
        self.last_used = Instant::now();
        match result {
            Ok((status, body, close)) => {
                if close {
                    self.conn = None;
                }
                Ok((status, body))
            }
            Err((e, _)) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Send one request and read its response. The error's flag is false only when the
    /// connection turned out to be closed (reset, or EOF before any response byte).
    fn exchange(&mut self, msg: &[u8]) -> Result<(u16, Vec<u8>, bool), (io::Error, bool)> {
        let r = self
            .conn
            .as_mut()
            .ok_or_else(|| (io::Error::other("not connected"), false))?;
        r.get_mut().write_all(msg).map_err(|e| (e, false))?;
        let mut line = Vec::with_capacity(64);
        match r.read_until(b'\n', &mut line) {
            Ok(0) => {
                return Err((
                    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                    false,
                ));
            }
            Ok(_) => {}
            Err(e) => {
                let closed = matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                );
                return Err((e, !closed));
            }
        }
        read_rest(r, &line).map_err(|e| (e, true))
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parse a response whose status line is `status_line`.
fn read_rest(r: &mut BufReader<TcpStream>, status_line: &[u8]) -> io::Result<(u16, Vec<u8>, bool)> {
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {:?}", body_text(status_line))))?;
    let mut len: Option<usize> = None;
    let mut chunked = false;
    let mut close = false;
    let mut line = Vec::with_capacity(128);
    for _ in 0..200 {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim_end();
        if l.is_empty() {
            let body = if chunked {
                read_chunked(r)?
            } else if let Some(n) = len {
                let mut b = vec![0; n];
                r.read_exact(&mut b)?;
                b
            } else if status == 204 || status == 304 || (100..200).contains(&status) {
                Vec::new()
            } else {
                close = true;
                let mut b = Vec::new();
                r.take(64 << 20).read_to_end(&mut b)?;
                b
            };
            return Ok((status, body, close));
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(bad(format!("bad header line {l:?}")));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = Some(v.parse().map_err(|_| bad("bad content-length"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    Err(bad("too many headers"))
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    for _ in 0..1_000_000 {
        line.clear();
        r.read_until(b'\n', &mut line)?;
        let size = String::from_utf8_lossy(&line);
        let size = size.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if n == 0 {
            // Trailers, then the empty line.
            for _ in 0..100 {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 || line == b"\r\n" {
                    return Ok(body);
                }
            }
            return Err(bad("too many trailers"));
        }
        if body.len() + n > 64 << 20 {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + n + 2, 0);
        r.read_exact(&mut body[start..])?;
        body.truncate(start + n);
    }
    Err(bad("too many chunks"))
}

/// A connection to the server; every request carries the tenant's bearer key, if any.
enum Client {
    Raw(RawConn, Option<Arc<str>>),
    Ureq {
        agent: ureq::Agent,
        base: String,
        auth: Option<Arc<str>>,
    },
}

impl Client {
    fn new(kind: ClientKind, addr: SocketAddr, auth: Option<Arc<str>>) -> Self {
        match kind {
            ClientKind::Raw => Client::Raw(RawConn::new(addr), auth),
            ClientKind::Ureq => Client::Ureq {
                agent: ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build()
                    .new_agent(),
                base: format!("http://{addr}"),
                auth,
            },
        }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        match self {
            Client::Raw(c, auth) => {
                let bearer = auth.as_deref().map(|k| format!("Bearer {k}"));
                let mut headers = Vec::with_capacity(2);
                if method != "GET" {
                    headers.push(("content-type", content_type));
                }
                if let Some(b) = &bearer {
                    headers.push(("authorization", b.as_str()));
                }
                c.request(method, path, &headers, body)
                    .map_err(|e| format!("{method} {path}: {e}"))
            }
            Client::Ureq { agent, base, auth } => {
                let url = format!("{base}{path}");
                let bearer = auth
                    .as_deref()
                    .map_or(String::new(), |k| format!("Bearer {k}"));
                let resp = match method {
                    "GET" => agent.get(&url).header("authorization", &bearer).call(),
                    "PUT" => agent
                        .put(&url)
                        .header("authorization", &bearer)
                        .content_type(content_type)
                        .send(body),
                    _ => agent
                        .post(&url)
                        .header("authorization", &bearer)
                        .content_type(content_type)
                        .send(body),
                };
                let mut resp = resp.map_err(|e| format!("{method} {path}: {e}"))?;
                let status = resp.status().as_u16();
                let bytes = resp
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec()
                    .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
                Ok((status, bytes))
            }
        }
    }

    fn post_json(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        self.send("POST", path, "application/json", body)
    }

    fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        self.send("GET", path, "", &[])
    }

    fn get_json(&mut self, path: &str) -> Result<Option<Value>, String> {
        let (status, body) = self.get(path)?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| format!("GET {path}: {e}")),
            404 => Ok(None),
            s => Err(format!("GET {path}: {s} {}", body_text(&body))),
        }
    }

    fn retries(&self) -> u64 {
        match self {
            Client::Raw(c, _) => c.retries,
            Client::Ureq { .. } => 0,
        }
    }

    fn connects(&self) -> u64 {
        match self {
            Client::Raw(c, _) => c.connects,
            Client::Ureq { .. } => 0,
        }
    }
}

/// Where and how to connect: the server's address, the client kind, the tenant key.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    kind: ClientKind,
    auth: Option<Arc<str>>,
}

impl Target {
    fn client(&self) -> Client {
        Client::new(self.kind, self.addr, self.auth.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Load generation

#[derive(Default)]
struct Load {
    ok: u64,
    errors: u64,
    first_errors: Vec<String>,
    lat_us: Vec<u32>,
    elapsed: Duration,
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

    fn per_s(&self) -> f64 {
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

    fn json(&self) -> Value {
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
    fn problems(&self, what: &str, expected: u64) -> Vec<String> {
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
fn closed_loop<F, G>(t: &Target, threads: usize, total: u64, deadline: Instant, make: F) -> Load
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
                    let mut client = t.client();
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
fn open_loop<F, G>(
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
fn poll_until<T, F>(
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

fn state_i64(v: &Value, field: &str) -> Option<i64> {
    v.get("state")?.get(field)?.as_i64()
}

fn drained(v: &Value) -> bool {
    v.get("mailbox_depth").and_then(Value::as_u64) == Some(0)
}

// ---------------------------------------------------------------------------------------
// The server child process

struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// The `default` tenant's API key (`<data>/default-tenant.key`).
    key: Option<Arc<str>>,
}

/// SIGTERM to a child of ours. The child has not been reaped (we still hold its `Child`),
/// so its pid cannot have been reused.
#[allow(unsafe_code)]
fn sigterm(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
}

impl Server {
    /// Start `dwell serve` on a free loopback port; returns once it printed its address.
    fn start(args: &Args, data: &Path) -> anyhow::Result<(Server, Duration)> {
        std::fs::create_dir_all(data)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("server.log"))?;
        let mut cmd = Command::new(&args.dwell);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .env("DWELL_LOG", &args.server_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(w) = args.http_workers {
            cmd.arg("--http-workers").arg(w.to_string());
        }
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", args.dwell.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().take(10_000) {
                let Ok(line) = line else { break };
                if !sent && let Some(a) = line.strip_prefix("dwell listening on http://") {
                    sent = tx.send(a.trim().to_owned()).is_ok();
                }
            }
        });
        let mut server = Server {
            child,
            pid,
            addr: "127.0.0.1:1".parse().expect("address"),
            key: None,
        };
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                bail!("the server did not report its address; its log ends:\n{tail}");
            }
        };
        let took = t0.elapsed();
        server.addr = addr.parse().with_context(|| format!("address {addr:?}"))?;
        if !server.addr.ip().is_loopback() {
            bail!("the server listens on {}, not loopback", server.addr);
        }
        // Written at the first start, before the address is printed.
        server.key = std::fs::read_to_string(data.join("default-tenant.key"))
            .ok()
            .map(|k| Arc::from(k.trim()));
        Ok((server, took))
    }

    fn target(&self, kind: ClientKind) -> Target {
        Target {
            addr: self.addr,
            kind,
            auth: self.key.clone(),
        }
    }

    fn rss_kb(&self) -> Option<u64> {
        proc_status_kb(self.pid, "VmRSS:")
    }

    fn hwm_kb(&self) -> Option<u64> {
        proc_status_kb(self.pid, "VmHWM:")
    }

    /// SIGTERM, then wait up to `grace` for the exit; SIGKILL after that.
    fn stop(&mut self, grace: Duration) -> anyhow::Result<(Duration, Option<ExitStatus>)> {
        let t0 = Instant::now();
        if let Some(st) = self.child.try_wait()? {
            return Ok((Duration::ZERO, Some(st)));
        }
        sigterm(self.pid);
        while t0.elapsed() < grace {
            if let Some(st) = self.child.try_wait()? {
                return Ok((t0.elapsed(), Some(st)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok((t0.elapsed(), None))
    }

    fn deploy(&self, kind: ClientKind, name: &str, wasm: &[u8]) -> anyhow::Result<()> {
        let mut c = self.target(kind).client();
        let (status, body) = c
            .send(
                "PUT",
                &format!("/v1/modules/{name}"),
                "application/wasm",
                wasm,
            )
            .map_err(|e| anyhow!(e))?;
        if status != 200 && status != 201 {
            bail!("deploying {name}: {status} {}", body_text(&body));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop(Duration::from_secs(10));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Results

struct Row {
    scenario: &'static str,
    metric: String,
    value: String,
    conditions: String,
}

#[derive(Default)]
struct Outcome {
    rows: Vec<Row>,
    json: serde_json::Map<String, Value>,
    problems: Vec<String>,
}

impl Outcome {
    fn row(&mut self, scenario: &'static str, metric: &str, value: String, conditions: &str) {
        self.rows.push(Row {
            scenario,
            metric: metric.to_owned(),
            value,
            conditions: conditions.to_owned(),
        });
    }

    fn set(&mut self, key: &str, v: Value) {
        self.json.insert(key.to_owned(), v);
    }
}

struct Bench {
    args: Args,
    counter: Vec<u8>,
    ticker: Option<Vec<u8>>,
    cores: usize,
    dirs: Vec<PathBuf>,
    /// Best calls/s of `sync`, for `rate`.
    best_sync: Option<f64>,
}

impl Bench {
    fn size(&self, given: Option<u64>, quick: u64, full: u64) -> u64 {
        given.unwrap_or(if self.args.full { full } else { quick })
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.args.scenario_timeout_s)
    }

    fn fresh_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        let parent = self
            .args
            .data_parent
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!(
            "dwell-bench-{}-{}-{what}",
            std::process::id(),
            unix_ms()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// What every HTTP figure has in common (the rows add their own sizes).
    fn http_cond(&self) -> String {
        "HTTP".to_owned()
    }

    /// The conditions shared by every row, printed above the table.
    fn common_conditions(&self, fsync: &Value, during: &Value) -> String {
        let f = |k: &str| fsync.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let d = |k: &str| during.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        format!(
            "{} run on {} cores ({}); durability: redb `Durability::Immediate`, one fsync per \
             writer commit batch (group commit), 202/200 only after it; this disk's 4 KiB \
             fsync: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms before the run, p99 {:.2} ms and \
             max {:.2} ms during it (sampled every 100 ms). HTTP rows: `dwell serve` \
             (release) on 127.0.0.1, HTTP/1.1 keep-alive, one connection per load thread \
             ({} client), server `--http-workers` {}, `DWELL_LOG={}`, load generator on the \
             same machine; call/event body `{}` ({} B JSON).",
            if self.args.full { "Full" } else { "Quick" },
            self.cores,
            cpu_model().unwrap_or_else(|| "unknown CPU".into()),
            f("p50_ms"),
            f("p99_ms"),
            f("max_ms"),
            d("p99_ms"),
            d("max_ms"),
            match self.args.client {
                ClientKind::Raw => "a minimal raw",
                ClientKind::Ureq => "ureq",
            },
            self.args
                .http_workers
                .map_or("2 (default)".to_owned(), |w| w.to_string()),
            self.args.server_log,
            String::from_utf8_lossy(ADD_ONE),
            ADD_ONE.len(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios

fn expect_202(r: Result<(u16, Vec<u8>), String>) -> Result<(), String> {
    match r? {
        (202, _) => Ok(()),
        (s, b) => Err(format!("{s} {}", body_text(&b))),
    }
}

/// The `total` of a counter reply.
fn reply_total(r: Result<(u16, Vec<u8>), String>) -> Result<i64, String> {
    match r? {
        (200, b) => serde_json::from_slice::<Value>(&b)
            .ok()
            .and_then(|v| v.get("total")?.as_i64())
            .ok_or_else(|| format!("200 without a total: {}", body_text(&b))),
        (s, b) => Err(format!("{s} {}", body_text(&b))),
    }
}

/// Scenario 1: Durable events into many distinct actors.
fn scenario_events(b: &Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
    let t = srv.target(b.args.client);
    let n = b.size(b.args.events, 20_000, 200_000);
    let actors = b.args.event_actors.clamp(1, n.max(1));
    let conc = b.args.event_concurrency;
    let deadline = b.deadline();
    let start_ms = unix_ms();
    let load = closed_loop(&t, conc, n, deadline, |_| {
        move |i: u64, c: &mut Client| {
            expect_202(c.post_json(
                &format!("/v1/actors/counter/ev-{}/events", i % actors),
                ADD_ONE,
            ))
        }
    });
    let acked_ms = unix_ms();
    out.problems.extend(load.problems("events", n));
    let paths: Vec<String> = (0..actors)
        .map(|k| format!("/v1/actors/counter/ev-{k}"))
        .collect();
    // Wait on a 1% sample first, so that full passes do not slow the server down while
    // most actors still have mail.
    let sample: Vec<String> = paths.iter().step_by(100).cloned().collect();
    poll_until(&t, &sample, 4, deadline, |_, v| drained(v).then_some(()))?;
    let views = poll_until(&t, &paths, 8, deadline, |_, v| {
        drained(v).then(|| {
            (
                state_i64(v, "total").unwrap_or(0),
                v.get("updated_ms").and_then(Value::as_u64).unwrap_or(0),
            )
        })
    })?;
    let sum: i64 = views.iter().map(|v| v.0).sum();
    let last_applied_ms = views.iter().map(|v| v.1).max().unwrap_or(acked_ms);
    let wrong = views
        .iter()
        .enumerate()
        .filter(|(k, v)| {
            let k = *k as u64;
            let expected = n / actors + u64::from(k < n % actors);
            v.0 != expected as i64
        })
        .count();
    if sum != load.ok as i64 || (load.errors == 0 && wrong > 0) {
        out.problems.push(format!(
            "events: the actors' totals sum to {sum}, but {} events were acknowledged ({wrong} actors off)",
            load.ok
        ));
    }
    let applied_s = (last_applied_ms.saturating_sub(start_ms)) as f64 / 1000.0;
    let applied = load.ok as f64 / applied_s.max(1e-3);
    let cond = format!(
        "{}; {} events into {} actors, {conc} connections",
        b.http_cond(),
        int(n),
        int(actors)
    );
    out.row(
        "events",
        "acknowledged (202 after fsync) events/s",
        rate_str(load.per_s()),
        &cond,
    );
    out.row(
        "events",
        "applied events/s (first send → last turn committed)",
        rate_str(applied),
        &cond,
    );
    out.row(
        "events",
        "event ack latency p50 / p99",
        format!(
            "{} / {}",
            ms_str(pct(&load.lat_us, 0.5)),
            ms_str(pct(&load.lat_us, 0.99))
        ),
        &cond,
    );
    out.set(
        "events",
        json!({
            "events": n, "actors": actors, "concurrency": conc, "body_bytes": ADD_ONE.len(),
            "load": load.json(),
            "acknowledged_per_s": load.per_s(),
            "applied_seconds": applied_s,
            "applied_per_s": applied,
            "applied_after_last_ack_ms": last_applied_ms.saturating_sub(acked_ms),
            "sum_of_totals": sum,
            "actors_with_wrong_total": wrong,
            "server_rss_kb": srv.rss_kb(),
        }),
    );
    Ok(())
}

/// Scenario 2: Request/reply calls to distinct actors.
fn scenario_sync(b: &mut Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
    let t = srv.target(b.args.client);
    let n = b.size(b.args.sync_calls, 5_000, 100_000);
    let mut levels = Vec::new();
    for (level, &conc) in b.args.concurrency.clone().iter().enumerate() {
        let load = sync_distinct(&t, conc, n, b.deadline(), &format!("s{level}c{conc}"));
        out.problems
            .extend(load.problems(&format!("sync c={conc}"), n));
        let cond = format!(
            "{}; {} calls, concurrency {conc}, each connection round-robins its own 4 actors, reply {{\"total\":n}} checked",
            b.http_cond(),
            int(n)
        );
        out.row(
            "sync",
            &format!("calls/s, c={conc}"),
            rate_str(load.per_s()),
            &cond,
        );
        out.row(
            "sync",
            &format!("latency p50 / p99 / p99.9, c={conc}"),
            format!(
                "{} / {} / {}",
                ms_str(pct(&load.lat_us, 0.5)),
                ms_str(pct(&load.lat_us, 0.99)),
                ms_str(pct(&load.lat_us, 0.999))
            ),
            &cond,
        );
        if load.errors == 0 {
            let best = b.best_sync.unwrap_or(0.0).max(load.per_s());
            b.best_sync = Some(best);
        }
        levels.push(json!({"concurrency": conc, "calls": n, "load": load.json()}));
    }
    out.set(
        "sync",
        json!({"levels": levels, "server_rss_kb": srv.rss_kb()}),
    );
    Ok(())
}

/// `n` calls at concurrency `conc`; each worker owns 4 actors and checks every reply
/// against the total it expects.
fn sync_distinct(t: &Target, conc: usize, n: u64, deadline: Instant, prefix: &str) -> Load {
    closed_loop(t, conc, n, deadline, |w| {
        let mut expected = [0i64; 4];
        let mut turn = 0usize;
        let paths: Vec<String> = (0..4)
            .map(|j| format!("/v1/actors/counter/{prefix}-w{w}-{j}"))
            .collect();
        move |_i: u64, c: &mut Client| {
            let j = turn % 4;
            turn += 1;
            let total = reply_total(c.post_json(&paths[j], ADD_ONE))?;
            expected[j] += 1;
            if total != expected[j] {
                let e = expected[j];
                expected[j] = total;
                return Err(format!("{}: total {total}, expected {e}", paths[j]));
            }
            Ok(())
        }
    })
}

/// Scenario 3: Request/reply calls against one hot actor.
fn scenario_hot(b: &Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
    let t = srv.target(b.args.client);
    let n = b.size(b.args.hot_calls, 3_000, 50_000);
    let mut levels = Vec::new();
    for (level, &conc) in b.args.concurrency.iter().enumerate() {
        let key = format!("hot{level}c{conc}");
        let path = format!("/v1/actors/counter/{key}");
        let totals = std::sync::Mutex::new(Vec::with_capacity(n as usize));
        let load = closed_loop(&t, conc, n, b.deadline(), |_| {
            let (path, totals) = (&path, &totals);
            move |_i: u64, c: &mut Client| {
                let total = reply_total(c.post_json(path, ADD_ONE))?;
                totals.lock().unwrap_or_else(|p| p.into_inner()).push(total);
                Ok(())
            }
        });
        out.problems
            .extend(load.problems(&format!("hot c={conc}"), n));
        let mut totals = totals.into_inner().unwrap_or_else(|p| p.into_inner());
        totals.sort_unstable();
        let exact = totals.iter().enumerate().all(|(i, &t)| t == i as i64 + 1);
        if !exact {
            out.problems.push(format!(
                "hot c={conc}: the replies are not exactly 1..={} (first {:?}, last {:?})",
                totals.len(),
                totals.first(),
                totals.last()
            ));
        }
        let fin = poll_until(&t, std::slice::from_ref(&path), 1, b.deadline(), |_, v| {
            drained(v).then(|| state_i64(v, "total").unwrap_or(-1))
        })?[0];
        if fin != load.ok as i64 {
            out.problems.push(format!(
                "hot c={conc}: final total {fin}, but {} calls were answered",
                load.ok
            ));
        }
        let cond = format!(
            "{}; {} calls to 1 actor, concurrency {conc}, replies checked to be exactly 1..=N",
            b.http_cond(),
            int(n)
        );
        out.row(
            "hot",
            &format!("calls/s, c={conc}"),
            rate_str(load.per_s()),
            &cond,
        );
        out.row(
            "hot",
            &format!("latency p50 / p99 / p99.9, c={conc}"),
            format!(
                "{} / {} / {}",
                ms_str(pct(&load.lat_us, 0.5)),
                ms_str(pct(&load.lat_us, 0.99)),
                ms_str(pct(&load.lat_us, 0.999))
            ),
            &cond,
        );
        levels.push(json!({
            "concurrency": conc, "calls": n, "load": load.json(),
            "final_total": fin, "replies_exactly_1_to_n": exact,
        }));
    }
    out.set(
        "hot",
        json!({"levels": levels, "server_rss_kb": srv.rss_kb()}),
    );
    Ok(())
}

/// Scenario 4: Latency at a fixed rate (half the best of `sync`).
fn scenario_rate(b: &mut Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
    let t = srv.target(b.args.client);
    let (rate, source) = match (b.args.rate, b.best_sync) {
        (Some(r), _) => (r, "given with --rate".to_owned()),
        (None, Some(best)) => (
            best / 2.0,
            format!("50% of {} calls/s measured in sync", rate_str(best)),
        ),
        (None, None) => {
            let c = b.args.concurrency.iter().copied().max().unwrap_or(32);
            let load = sync_distinct(&t, c, 3_000, b.deadline(), "calib");
            if load.errors > 0 || load.ok == 0 {
                bail!("rate: the calibration run failed: {:?}", load.first_errors);
            }
            (
                load.per_s() / 2.0,
                format!(
                    "50% of {} calls/s of a calibration run at c={c}",
                    rate_str(load.per_s())
                ),
            )
        }
    };
    let secs = b
        .args
        .rate_secs
        .unwrap_or(if b.args.full { 30.0 } else { 5.0 });
    let total = (rate * secs).round().max(1.0) as u64;
    let keys = 1024u64;
    let workers = 256usize;
    let load = open_loop(&t, workers, rate, total, b.deadline(), |_| {
        move |i: u64, c: &mut Client| {
            reply_total(c.post_json(&format!("/v1/actors/counter/rate-{}", i % keys), ADD_ONE))
                .map(|_| ())
        }
    });
    out.problems.extend(load.problems("rate", total));
    let used = keys.min(total);
    let paths: Vec<String> = (0..used)
        .map(|k| format!("/v1/actors/counter/rate-{k}"))
        .collect();
    let totals = poll_until(&t, &paths, 8, b.deadline(), |_, v| {
        drained(v).then(|| state_i64(v, "total").unwrap_or(0))
    })?;
    let sum: i64 = totals.iter().sum();
    if load.errors == 0 && sum != load.ok as i64 {
        out.problems.push(format!(
            "rate: the totals sum to {sum}, but {} calls were answered",
            load.ok
        ));
    }
    let cond = format!(
        "{}; open loop at {} calls/s ({source}) for {secs} s, up to {workers} connections, {keys} actors, latency from the scheduled send time",
        b.http_cond(),
        rate_str(rate)
    );
    out.row(
        "rate",
        "latency p50 / p99 / p99.9 at 50% of max",
        format!(
            "{} / {} / {}",
            ms_str(pct(&load.lat_us, 0.5)),
            ms_str(pct(&load.lat_us, 0.99)),
            ms_str(pct(&load.lat_us, 0.999))
        ),
        &cond,
    );
    out.row("rate", "achieved calls/s", rate_str(load.per_s()), &cond);
    out.set(
        "rate",
        json!({
            "target_per_s": rate, "rate_source": source, "seconds": secs, "workers": workers,
            "actors": keys, "load": load.json(), "sum_of_totals": sum,
        }),
    );
    Ok(())
}

/// Scenario 5: many timers over many `ticker` actors, all due within a few seconds.
fn scenario_timers(b: &Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
    if b.ticker.is_none() {
        bail!("timers: ticker.wasm is missing (run scripts/build-guests.sh)");
    }
    let t = srv.target(b.args.client);
    let n = b.size(b.args.timers, 10_000, 100_000);
    let actors = b.args.timer_actors.clamp(1, n.max(1));
    let lead = b
        .args
        .timer_lead_ms
        .unwrap_or(if b.args.full { 6_000 } else { 3_000 });
    let spread = b.args.timer_spread_ms;
    let per: Vec<u64> = (0..actors)
        .map(|a| n / actors + u64::from(a < n % actors))
        .collect();
    let first_due = unix_ms() + lead;
    let last_due = first_due + spread;
    let span = n.saturating_sub(1).max(1);
    // Timer g (global) belongs to actor g % actors and is due at first_due + g/span·spread.
    let bodies: Vec<Vec<u8>> = (0..actors)
        .map(|a| {
            let timers: Vec<Value> = (0..per[a as usize])
                .map(|j| {
                    let g = j * actors + a;
                    json!({"name": format!("t{j}"), "at_ms": first_due + g * spread / span})
                })
                .collect();
            serde_json::to_vec(&json!({ "timers": timers })).expect("json")
        })
        .collect();
    let body_bytes = bodies.iter().map(Vec::len).max().unwrap_or(0);
    let start = Instant::now();
    let deadline = b.deadline();
    let load = closed_loop(&t, 16, actors, deadline, |_| {
        let bodies = &bodies;
        move |i: u64, c: &mut Client| {
            expect_202(c.post_json(
                &format!("/v1/actors/ticker/tk-{i}/events"),
                &bodies[i as usize],
            ))
        }
    });
    out.problems
        .extend(load.problems("timers (setting)", actors));
    let paths: Vec<String> = (0..actors)
        .map(|a| format!("/v1/actors/ticker/tk-{a}"))
        .collect();
    poll_until(&t, &paths, 8, deadline, |a, v| {
        (state_i64(v, "set") == Some(per[a] as i64)).then_some(())
    })?;
    let set_ms = start.elapsed().as_millis() as u64;
    let all_set_before_due = unix_ms() <= first_due;
    if !all_set_before_due {
        out.problems.push(format!(
            "timers: setting took {set_ms} ms, longer than the lead of {lead} ms; raise --timer-lead-ms"
        ));
    }
    let fire_deadline = (Instant::now()
        + Duration::from_millis(last_due.saturating_sub(unix_ms()))
        + Duration::from_secs(120))
    .min(deadline);
    let done = |a: usize, v: &Value| {
        let fired = state_i64(v, "fired")?;
        let pending = v.get("state")?.get("pending")?.as_u64()?;
        (fired >= per[a] as i64 && pending == 0 && drained(v)).then_some(())
    };
    poll_until(&t, &paths, 8, fire_deadline, done)?;
    let fired_all_ms = unix_ms();
    // Look once more a moment later: a duplicate fire would show up now.
    std::thread::sleep(Duration::from_millis(500));
    let views = poll_until(&t, &paths, 8, deadline, |_, v| {
        let s = v.get("state")?;
        let lat: Vec<i64> = s
            .get("lateness_ms")?
            .as_array()?
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        Some((
            s.get("fired")?.as_i64()?,
            s.get("duplicates")?.as_i64()?,
            s.get("unknown")?.as_i64()?,
            lat,
            v.get("updated_ms").and_then(Value::as_u64).unwrap_or(0),
            v.get("dead_letter_count")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        ))
    })?;
    let fired: i64 = views.iter().map(|v| v.0).sum();
    let dups: i64 = views.iter().map(|v| v.1).sum();
    let unknown: i64 = views.iter().map(|v| v.2).sum();
    let dead: u64 = views.iter().map(|v| v.5).sum();
    let wrong = views
        .iter()
        .enumerate()
        .filter(|(a, v)| v.0 != per[*a] as i64)
        .count();
    let mut lat: Vec<i64> = views.iter().flat_map(|v| v.3.iter().copied()).collect();
    lat.sort_unstable();
    let last_turn_ms = views.iter().map(|v| v.4).max().unwrap_or(fired_all_ms);
    if fired != n as i64 || dups != 0 || unknown != 0 || wrong != 0 || dead != 0 {
        out.problems.push(format!(
            "timers: {fired} fired of {n} ({wrong} actors off), {dups} duplicates, {unknown} unknown, {dead} dead letters"
        ));
    }
    if lat.first().is_some_and(|&l| l < 0) {
        out.problems.push(format!(
            "timers: {} timers fired before they were due (earliest by {} ms)",
            lat.iter().filter(|&&l| l < 0).count(),
            -lat[0]
        ));
    }
    let fire_rate = n as f64 / (last_turn_ms.saturating_sub(first_due) as f64 / 1000.0).max(1e-3);
    let cond = format!(
        "HTTP; {} timers over {} ticker actors ({} per actor), due evenly within {spread} ms; lateness = turn start (ctx.now_ms) − due, recorded by the guest",
        int(n),
        int(actors),
        n / actors
    );
    out.row(
        "timers",
        "lateness p50 / p99 / max",
        format!(
            "{} ms / {} ms / {} ms",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(0)
        ),
        &cond,
    );
    out.row(
        "timers",
        "timers fired/s (first due → last timer turn)",
        rate_str(fire_rate),
        &cond,
    );
    out.set(
        "timers",
        json!({
            "timers": n, "actors": actors, "lead_ms": lead, "spread_ms": spread,
            "set_body_bytes_max": body_bytes,
            "set_load": load.json(), "set_applied_ms": set_ms,
            "all_set_before_first_due": all_set_before_due,
            "fired": fired, "duplicates": dups, "unknown": unknown, "dead_letters": dead,
            "actors_with_wrong_count": wrong,
            "lateness_ms": {
                "min": lat.first().copied().unwrap_or(0),
                "p50": pct(&lat, 0.5), "p90": pct(&lat, 0.9), "p99": pct(&lat, 0.99),
                "max": lat.last().copied().unwrap_or(0),
            },
            "last_timer_turn_after_last_due_ms": last_turn_ms as i64 - last_due as i64,
            "fired_per_s": fire_rate,
            "server_rss_kb": srv.rss_kb(),
        }),
    );
    Ok(())
}

/// Scenario 6: Idle actors: memory, file size, restart.
fn scenario_idle(b: &mut Bench, out: &mut Outcome) -> anyhow::Result<()> {
    let n = b.size(b.args.idle_actors, 100_000, 1_000_000);
    let data = b.fresh_dir("idle")?;
    let (mut srv, _) = Server::start(&b.args, &data)?;
    srv.deploy(b.args.client, "counter", &b.counter)?;
    let t = srv.target(b.args.client);
    let rss_empty = srv.rss_kb();
    let deadline = b.deadline();
    let conc = b.args.event_concurrency;
    let load = closed_loop(&t, conc, n, deadline, |_| {
        move |i: u64, c: &mut Client| {
            expect_202(c.post_json(&format!("/v1/actors/counter/idle-{i}/events"), ADD_ONE))
        }
    });
    out.problems.extend(load.problems("idle (creating)", n));
    let paths: Vec<String> = (0..n)
        .map(|i| format!("/v1/actors/counter/idle-{i}"))
        .collect();
    // Wait for the last ones first, then check them all once.
    let tail = paths.len().saturating_sub(1000);
    poll_until(&t, &paths[tail..], 8, deadline, |_, v| {
        drained(v).then_some(())
    })?;
    let t_check = Instant::now();
    let totals = poll_until(&t, &paths, 16, deadline, |_, v| {
        drained(v).then(|| state_i64(v, "total").unwrap_or(0))
    })?;
    let check_s = t_check.elapsed().as_secs_f64();
    let wrong = totals.iter().filter(|&&t| t != 1).count();
    if wrong > 0 {
        out.problems
            .push(format!("idle: {wrong} actors do not have total 1"));
    }
    // Let the allocator settle a moment before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let rss = srv.rss_kb();
    let hwm = srv.hwm_kb();
    let file = std::fs::metadata(data.join("dwell.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let dir_bytes = dir_size(&data);
    let (stop_took, status) = srv.stop(Duration::from_secs(60))?;
    if status.is_none() {
        out.problems
            .push("idle: the server did not exit within 60 s of SIGTERM".into());
    }
    drop(srv);

    // Restart on the same data: spawn → first served call.
    let t0 = Instant::now();
    let (srv2, listening) = Server::start(&b.args, &data)?;
    let t2 = srv2.target(b.args.client);
    let mut first_call = None;
    let mut last_err = String::new();
    for _ in 0..100_000 {
        if t0.elapsed() > Duration::from_secs(300) {
            break;
        }
        let mut c = t2.client();
        match reply_total(c.post_json("/v1/actors/counter/idle-0", ADD_ONE)) {
            Ok(2) => {
                first_call = Some(t0.elapsed());
                break;
            }
            Ok(other) => {
                last_err = format!("total {other}, expected 2");
                break;
            }
            Err(e) => last_err = e,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if first_call.is_none() {
        out.problems.push(format!(
            "idle: no call was served after the restart: {last_err}"
        ));
    }
    let rss_restart = srv2.rss_kb();
    drop(srv2);

    let cond = format!(
        "HTTP; {} counter actors with 1 event each (state {{\"total\":1}}), {conc} connections; restart with SIGTERM",
        int(n)
    );
    out.row(
        "idle",
        "creating actors (1 event each) events/s",
        rate_str(load.per_s()),
        &cond,
    );
    out.row(
        "idle",
        "server RSS: empty / with idle actors / after restart",
        format!(
            "{} / {} / {}",
            rss_empty.map_or("?".into(), mib),
            rss.map_or("?".into(), mib),
            rss_restart.map_or("?".into(), mib)
        ),
        &cond,
    );
    out.row(
        "idle",
        "data file dwell.redb",
        format!(
            "{:.1} MiB ({} B per actor)",
            file as f64 / (1 << 20) as f64,
            file / n.max(1)
        ),
        &cond,
    );
    out.row(
        "idle",
        "SIGTERM → exit; restart: spawn → first served call",
        format!(
            "{} ms; {}",
            stop_took.as_millis(),
            first_call.map_or("failed".into(), |d| format!("{} ms", d.as_millis()))
        ),
        &cond,
    );
    out.set(
        "idle",
        json!({
            "actors": n, "concurrency": conc, "load": load.json(),
            "verify_seconds": check_s, "actors_with_wrong_total": wrong,
            "rss_kb_empty": rss_empty, "rss_kb": rss, "hwm_kb": hwm,
            "rss_kb_after_restart": rss_restart,
            "data_file_bytes": file, "data_dir_bytes": dir_bytes,
            "bytes_per_actor": file / n.max(1),
            "stop_ms": stop_took.as_millis() as u64, "stop_exit": status.map(|s| s.to_string()),
            "restart_listening_ms": listening.as_millis() as u64,
            "restart_first_call_ms": first_call.map(|d| d.as_millis() as u64),
        }),
    );
    Ok(())
}

#[derive(serde::Deserialize)]
struct CounterState {
    total: i64,
}

/// Scenario 7: the engine in-process, events in, turns applied. Two phases on one
/// engine: in `cold` the events go to many actors (nearly every turn starts a runner and
/// an instance), in `warm` to a few (runners take batches of turns on a warm instance).
fn scenario_engine(b: &mut Bench, out: &mut Outcome) -> anyhow::Result<()> {
    let n = b.size(b.args.engine_events, 20_000, 200_000);
    let conc = b.args.engine_concurrency.max(1);
    let dir = b.fresh_dir("engine")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-engine")
        .build()?;
    let config = EngineConfig {
        data_dir: dir.clone(),
        ..EngineConfig::default()
    };
    let (max_active, batch) = (config.max_active_actors, config.batch_per_actor);
    let engine = {
        let _g = rt.enter();
        Engine::start(config)?
    };
    let tenant = TenantId::default_tenant();
    // First start: creates the `default` tenant (its keys go into the temp data dir).
    rt.block_on(engine.bootstrap(None))?;
    rt.block_on(engine.deploy(&tenant, "counter", b.counter.clone()))?;
    let mut phases = serde_json::Map::new();
    let warm_actors = (b.args.engine_actors / 100).max(1);
    for (phase, actors) in [("cold", b.args.engine_actors), ("warm", warm_actors)] {
        let actors = actors.clamp(1, n.max(1));
        let ids: Vec<ActorId> = (0..actors)
            .map(|k| ActorId::new(tenant.clone(), "counter", format!("en-{phase}-{k}")))
            .collect();
        let r = engine_phase(&rt, &engine, Arc::new(ids), n, conc, b.deadline())?;
        let what = format!("engine {phase}");
        if r.accepted != n || !r.errors.is_empty() {
            out.problems.push(format!(
                "{what}: {} of {n} events accepted; errors {:?}",
                r.accepted, r.errors
            ));
        }
        if r.still_pending > 0 {
            out.problems.push(format!(
                "{what}: {} actors still had mail at the deadline",
                r.still_pending
            ));
        }
        if r.sum != r.accepted as i64 {
            out.problems.push(format!(
                "{what}: the totals sum to {}, but {} events were accepted",
                r.sum, r.accepted
            ));
        }
        let cond = format!(
            "in-process `Engine`, no HTTP; {} events into {} actors ({} each), {conc} concurrent senders (tokio tasks on the engine's runtime), batch_per_actor {batch}, max_active_actors {max_active}",
            int(n),
            int(actors),
            n / actors
        );
        out.row(
            "engine",
            &format!("{phase}: events accepted/s (durable)"),
            rate_str(r.accepted as f64 / r.accept_s),
            &cond,
        );
        out.row(
            "engine",
            &format!("{phase}: turns applied/s (first send → last turn committed)"),
            rate_str(r.accepted as f64 / r.applied_s),
            &cond,
        );
        out.row(
            "engine",
            &format!("{phase}: writer ops per commit (= per fsync)"),
            format!(
                "{:.1} ({} commits, largest {})",
                r.ops as f64 / r.commits.max(1) as f64,
                int(r.commits),
                r.largest_batch
            ),
            &cond,
        );
        phases.insert(
            phase.to_owned(),
            json!({
                "events": n, "actors": actors, "concurrency": conc,
                "batch_per_actor": batch, "max_active_actors": max_active,
                "accepted": r.accepted, "accept_seconds": r.accept_s,
                "accepted_per_s": r.accepted as f64 / r.accept_s,
                "applied_seconds": r.applied_s,
                "applied_per_s": r.accepted as f64 / r.applied_s,
                "drained_seen_seconds": r.drained_s,
                "sum_of_totals": r.sum,
                "writer": {"commits": r.commits, "ops": r.ops, "largest_batch_since_start": r.largest_batch},
            }),
        );
    }
    drop(engine);
    rt.shutdown_timeout(Duration::from_secs(5));
    out.set("engine", Value::Object(phases));
    Ok(())
}

struct EnginePhase {
    accepted: u64,
    errors: Vec<String>,
    accept_s: f64,
    applied_s: f64,
    drained_s: f64,
    sum: i64,
    still_pending: usize,
    commits: u64,
    ops: u64,
    largest_batch: u64,
}

/// Send `n` events round-robin to `ids` from `conc` tasks, then wait until every mailbox
/// is empty and add up the totals.
fn engine_phase(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    ids: Arc<Vec<ActorId>>,
    n: u64,
    conc: usize,
    deadline: Instant,
) -> anyhow::Result<EnginePhase> {
    let body = rmp_serde::to_vec_named(&json!({"add": 1}))?;
    let actors = ids.len() as u64;
    let stats0 = rt.block_on(engine.writer_stats())?;
    let start = Instant::now();
    let start_ms = unix_ms();
    let next = Arc::new(AtomicU64::new(0));
    let (accepted, errors) = rt.block_on(async {
        let mut tasks = Vec::with_capacity(conc);
        for _ in 0..conc {
            let (engine, ids, next, body) =
                (engine.clone(), ids.clone(), next.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut err) = (0u64, Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || Instant::now() > deadline {
                        break;
                    }
                    match engine
                        .send_event(&ids[(i % actors) as usize], body.clone(), None)
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(e) if err.len() < 3 => err.push(e.to_string()),
                        Err(_) => {}
                    }
                }
                (ok, err)
            }));
        }
        let mut ok = 0;
        let mut errors = Vec::new();
        for t in tasks {
            match t.await {
                Ok((o, e)) => {
                    ok += o;
                    errors.extend(e);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        (ok, errors)
    });
    let accept_s = start.elapsed().as_secs_f64().max(1e-9);
    // Poll from this thread (inspect is a synchronous read) until every mailbox is empty;
    // a pass over many actors costs CPU the engine needs, so passes are spaced out.
    let mut pending: Vec<usize> = (0..ids.len()).collect();
    let mut totals = vec![0i64; ids.len()];
    let mut last_ms = 0u64;
    for _ in 0..1_000_000u32 {
        let pass = Instant::now();
        let mut still = Vec::new();
        for &k in &pending {
            match engine.inspect(&ids[k])? {
                Some(v) if v.mailbox_depth == 0 => {
                    last_ms = last_ms.max(v.meta.updated_ms);
                    totals[k] = match v.state.as_deref() {
                        Some(s) => rmp_serde::from_slice::<CounterState>(s)
                            .map(|c| c.total)
                            .unwrap_or(-1),
                        None => 0,
                    };
                }
                _ => still.push(k),
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep((pass.elapsed() * 4).max(Duration::from_millis(20)));
    }
    let drained_s = start.elapsed().as_secs_f64();
    let stats1 = rt.block_on(engine.writer_stats())?;
    Ok(EnginePhase {
        accepted,
        errors,
        accept_s,
        applied_s: (last_ms.saturating_sub(start_ms) as f64 / 1000.0).max(1e-3),
        drained_s,
        sum: totals.iter().sum(),
        still_pending: pending.len(),
        commits: stats1.commits - stats0.commits,
        ops: stats1.ops - stats0.ops,
        largest_batch: stats1.largest_batch,
    })
}

// ---------------------------------------------------------------------------------------

fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    })
}

/// How long an fsync of a 4 KiB write takes in `dir` (the disk the data lives on): 200
/// rounds, or fewer if they take more than 10 s.
fn fsync_probe(dir: &Path) -> Value {
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
struct FsyncMonitor {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Instant, u32)>>,
}

struct FsyncSamples(Vec<(Instant, u32)>);

impl FsyncMonitor {
    fn start(dir: &Path) -> FsyncMonitor {
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

    fn stop(self) -> FsyncSamples {
        self.stop.store(true, Ordering::Relaxed);
        FsyncSamples(self.handle.join().unwrap_or_default())
    }
}

impl FsyncSamples {
    fn window(&self, from: Instant, to: Instant) -> Value {
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

fn machine() -> Value {
    let cpu = cpu_model();
    let mem_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_kb": mem_kb,
        "kernel": kernel,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

fn markdown(common: &str, rows: &[Row]) -> String {
    let mut s =
        format!("{common}\n\n| scenario | metric | result | conditions |\n|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.scenario, r.metric, r.value, r.conditions
        ));
    }
    s
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("dwell-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let selected: Vec<&str> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for s in &args.only {
            let s = s.trim();
            match ALL.iter().find(|a| **a == s) {
                Some(a) => v.push(*a),
                None => bail!("unknown scenario {s:?}; choose from {}", ALL.join(",")),
            }
        }
        v
    };
    let wants = |s: &str| selected.contains(&s);
    let needs_server = ["events", "sync", "hot", "rate", "timers"]
        .iter()
        .any(|s| wants(s));
    let needs_binary = needs_server || wants("idle");
    if needs_binary && !args.dwell.is_file() {
        bail!(
            "{} not found; build it with `cargo build --release -p dwell` (or run scripts/bench.sh)",
            args.dwell.display()
        );
    }
    let counter_path = args.guests.join("counter.wasm");
    let counter = std::fs::read(&counter_path).with_context(|| {
        format!(
            "reading {}; build the guests with scripts/build-guests.sh",
            counter_path.display()
        )
    })?;
    let ticker = std::fs::read(args.guests.join("ticker.wasm")).ok();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut b = Bench {
        args,
        counter,
        ticker,
        cores,
        dirs: Vec::new(),
        best_sync: None,
    };
    let mut out = Outcome::default();
    let started = Instant::now();
    let probe_dir = b.fresh_dir("fsync")?;
    let fsync = fsync_probe(&probe_dir);
    let monitor = FsyncMonitor::start(&probe_dir);
    let mut windows: Vec<(&str, Instant, Instant)> = Vec::new();
    eprintln!(
        "dwell-bench: {} run of {} on {cores} cores",
        if b.args.full { "full" } else { "quick" },
        selected.join(",")
    );

    if needs_server {
        let data = b.fresh_dir("main")?;
        let (srv, took) = Server::start(&b.args, &data)?;
        eprintln!(
            "server pid {} on {} (started in {} ms)",
            srv.pid,
            srv.addr,
            took.as_millis()
        );
        srv.deploy(b.args.client, "counter", &b.counter)?;
        if let Some(t) = &b.ticker {
            srv.deploy(b.args.client, "ticker", t)?;
        }
        out.set("server_rss_kb_after_deploy", json!(srv.rss_kb()));
        type Scenario = fn(&mut Bench, &Server, &mut Outcome) -> anyhow::Result<()>;
        let scenarios: [(&str, Scenario); 5] = [
            ("events", |b, s, o| scenario_events(b, s, o)),
            ("sync", scenario_sync),
            ("hot", |b, s, o| scenario_hot(b, s, o)),
            ("rate", scenario_rate),
            ("timers", |b, s, o| scenario_timers(b, s, o)),
        ];
        for (name, f) in scenarios {
            if !wants(name) {
                continue;
            }
            let t0 = Instant::now();
            eprintln!("== {name}");
            if let Err(e) = f(&mut b, &srv, &mut out) {
                out.problems.push(format!("{name}: {e:#}"));
            }
            eprintln!("   {name} took {:.1} s", t0.elapsed().as_secs_f64());
            windows.push((name, t0, Instant::now()));
        }
        out.set("server_rss_kb_at_end", json!(srv.rss_kb()));
        out.set("server_hwm_kb_at_end", json!(srv.hwm_kb()));
        drop(srv);
    }
    for (name, f) in [
        (
            "idle",
            scenario_idle as fn(&mut Bench, &mut Outcome) -> anyhow::Result<()>,
        ),
        ("engine", scenario_engine),
    ] {
        if !wants(name) {
            continue;
        }
        let t0 = Instant::now();
        eprintln!("== {name}");
        if let Err(e) = f(&mut b, &mut out) {
            out.problems.push(format!("{name}: {e:#}"));
        }
        eprintln!("   {name} took {:.1} s", t0.elapsed().as_secs_f64());
        windows.push((name, t0, Instant::now()));
    }
    let fsync_run = monitor.stop();
    // What the disk did while each scenario ran: tails of the figures follow its stalls.
    for (name, from, to) in &windows {
        let w = fsync_run.window(*from, *to);
        let max = w.get("max_ms").and_then(Value::as_f64).unwrap_or(f64::NAN);
        for r in out.rows.iter_mut().filter(|r| r.scenario == *name) {
            r.conditions
                .push_str(&format!("; disk fsync max {max:.1} ms meanwhile"));
        }
        if let Some(Value::Object(m)) = out.json.get_mut(*name) {
            m.insert("disk_fsync_meanwhile".into(), w);
        }
    }

    let during = fsync_run.window(started, Instant::now());
    let table = markdown(&b.common_conditions(&fsync, &during), &out.rows);
    println!("\n{table}");
    let ok = out.problems.is_empty();
    if !ok {
        println!("FAILED checks:");
        for p in &out.problems {
            println!("- {p}");
        }
    }
    let git = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let report = json!({
        "ok": ok,
        "problems": out.problems,
        "mode": if b.args.full { "full" } else { "quick" },
        "scenarios_run": selected,
        "machine": machine(),
        "fsync_4k": fsync,
        "fsync_4k_during_run": during,
        "git": git,
        "unix_ms": unix_ms(),
        "seconds": started.elapsed().as_secs_f64(),
        "conditions": {
            "durability": "redb Durability::Immediate: one fsync per writer commit batch (group commit); 202/200 only after it",
            "client": format!("{:?}", b.args.client).to_lowercase(),
            "http_workers": b.args.http_workers,
            "server_log": b.args.server_log,
            "data_parent": b.args.data_parent.clone().unwrap_or_else(std::env::temp_dir),
            "body": String::from_utf8_lossy(ADD_ONE),
        },
        "results": Value::Object(out.json),
        "table_markdown": table,
    });
    if let Some(parent) = b.args.json.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&b.args.json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", b.args.json.display()))?;
    eprintln!(
        "wrote {} ({:.0} s)",
        b.args.json.display(),
        started.elapsed().as_secs_f64()
    );
    if !b.args.keep_data {
        for d in &b.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    Ok(ok)
}

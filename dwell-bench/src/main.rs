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
//! 8. `cluster` (with `--postgres` only) — `sync`'s calls on one node without cluster mode,
//!    a cluster of one and a cluster of three on this machine: calls/s, p50/p99, the share
//!    forwarded, database commits/s, rows and WAL bytes per call, CPU per call of the
//!    nodes and of PostgreSQL.
//!
//! Every loop has a count and a deadline. The bench only binds and connects to
//! `127.0.0.1`, only signals the server processes it started, and exits non-zero when a
//! check fails. It builds nothing: run `scripts/bench.sh`, which builds the release binary
//! and the guests first. A markdown table is printed; the figures and their conditions
//! are written as JSON (`--json`, default `target/bench.json`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::{Value, json};

mod client;
mod fsync;
mod load;
mod pg;
mod report;
mod scenarios;
mod server;
mod util;

use client::ClientKind;
use fsync::{FsyncMonitor, fsync_probe};
use report::{Outcome, machine, markdown};
use scenarios::{
    ADD_ONE, Bench, scenario_cluster, scenario_engine, scenario_events, scenario_hot,
    scenario_idle, scenario_rate, scenario_sync, scenario_timers,
};
use server::Server;
use util::unix_ms;

const ALL: &[&str] = &[
    "events", "sync", "hot", "rate", "timers", "idle", "engine", "cluster",
];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "dwell-bench",
    about = "Benchmark a release dwell server over loopback HTTP (and the engine in-process)"
)]
struct Args {
    /// Use the full sizes (takes many minutes) instead of the quick ones.
    #[arg(long)]
    full: bool,
    /// Scenarios to run, comma separated: events,sync,hot,rate,timers,idle,engine,cluster
    /// (the last on `--postgres` only).
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
    /// Run on PostgreSQL instead of the redb file: the server URL (e.g.
    /// `postgres://postgres@127.0.0.1:5432`); each run gets fresh databases.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// `--http-workers` of the server (default: the server's default).
    #[arg(long)]
    http_workers: Option<usize>,
    /// One more argument for `dwell serve` (repeatable), e.g.
    /// `--server-arg=--history-turns=0` to measure without turn history.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
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
        // The cluster runs on PostgreSQL only.
        ALL.iter()
            .copied()
            .filter(|s| *s != "cluster" || args.postgres.is_some())
            .collect()
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
        ("cluster", scenario_cluster),
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
            "server_args": b.args.server_arg,
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

//! `dwell-chaos`: a crash loop that keeps Dwell's core promise checked (see README
//! "Reliability"; run it with `scripts/chaos.sh`).
//! Long because the kill loop, its options and the run's report belong together (load and
//! checks are in load.rs and check.rs).
//!
//! It starts the real `dwell serve` on `127.0.0.1:0` with a fresh data directory, deploys
//! the `checker` guest (`examples/checker`, which records every message it applies),
//! drives mixed load from several client threads — calls and events with
//! `Idempotency-Key`, timers set by the guest, asks between actors, calls with a
//! `Callback-Url` to a receiver inside this tool — and SIGKILLs the server at random
//! moments, some of them during start-up, restarting it on the same data directory each
//! time. After the last kill it restarts the server, drains it and checks (check.rs)
//! that every acknowledged message was applied exactly once, timers fired once and never
//! early, callbacks were delivered with one `webhook-id` and valid signatures, and
//! replays return the first result; then a clean SIGTERM and restart must change nothing.
//!
//! Layout: `server.rs` (the dwell processes), `load.rs` (client threads and the ledger),
//! `receiver.rs` (callback receiver), `api.rs` (HTTP client), `check.rs` (the checks).
//!
//! Bounded: `--kills` kills at most, the kill phase ends after `--seconds`, the drain
//! after `--drain-seconds`. It binds and connects only to 127.0.0.1 and signals only the
//! processes it started, by pid. `--inject` puts faults in on purpose to show the checker
//! catches them (then it exits 0 only if each was caught and nothing else was found).

mod api;
mod check;
mod load;
mod receiver;
mod server;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};

use crate::api::Api;
use crate::check::{Class, Violation, violation};
use crate::load::{Injected, Kind, MODULE, Msg, Outcome, Rng, Shared};
use crate::server::{Dwell, Ended};

/// The callback signing secret given to every incarnation (`--webhook-secret`).
const SECRET: &str = "whsec_Y2hhb3MtY2hhb3MtY2hhb3MtY2hhb3MtY2hhb3M=";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Inject {
    /// Send a few events twice without Idempotency-Key, record each as one message.
    Double,
    /// Record a few messages as acknowledged without sending them.
    Lost,
    /// Post a forged, badly signed callback to the receiver.
    ForgedCallback,
}

#[derive(Parser, Debug)]
#[command(
    name = "dwell-chaos",
    about = "SIGKILL a real dwell server under mixed load, many times, and check that every acknowledged message was applied exactly once"
)]
struct Args {
    /// SIGKILLs to deliver (during start-up and under load).
    #[arg(long, default_value_t = 20)]
    kills: u64,
    /// Upper bound on the kill phase, in seconds (the drain and checks follow it).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Seed of the random choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Client threads sending load.
    #[arg(long, default_value_t = 4)]
    clients: u64,
    /// Actors the load is spread over.
    #[arg(long, default_value_t = 64)]
    actors: u64,
    /// Longest time a server runs under load before it is killed, in ms.
    #[arg(long, default_value_t = 2000)]
    max_uptime_ms: u64,
    /// SIGKILLs of the very first start on the empty data directory (part of `--kills`).
    #[arg(long, default_value_t = 2)]
    first_start_kills: u64,
    /// Kills after which new messages go to a fresh set of actors (bounds state sizes).
    #[arg(long, default_value_t = 10)]
    era_kills: u64,
    /// Percent of restarts that are killed again during start-up.
    #[arg(long, default_value_t = 25)]
    startup_kills: u64,
    /// Percent of kills sent shortly after a SIGTERM, while the server stops cleanly.
    #[arg(long, default_value_t = 10)]
    shutdown_kills: u64,
    /// Longest wait for the server to apply everything after the last restart.
    #[arg(long, default_value_t = 120)]
    drain_seconds: u64,
    /// Acknowledged messages replayed with their Idempotency-Key, at most.
    #[arg(long, default_value_t = 3000)]
    replays: usize,
    /// The server binary.
    #[arg(long, default_value = "target/release/dwell")]
    dwell: PathBuf,
    /// The checker guest component.
    #[arg(long, default_value = "target/guests/wasm32-wasip2/guest/checker.wasm")]
    guest: PathBuf,
    /// Parent of the run's directory (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run's directory (data and server log) even when everything passed.
    #[arg(long)]
    keep: bool,
    /// Put faults in on purpose (comma separated) to show that the checker catches them.
    #[arg(long, value_enum, value_delimiter = ',')]
    inject: Vec<Inject>,
    /// Print a line per kill.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dwell-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Kill-phase figures.
#[derive(Debug, Default)]
struct Kills {
    total: u64,
    during_startup: u64,
    under_load: u64,
    during_stop: u64,
    /// Kills of the very first start (before and after it set up the data directory).
    first_start: u64,
    /// SIGTERMs that ended the server before the SIGKILL came.
    clean_stops: u64,
    longest_start: Duration,
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.actors < 2 || args.clients == 0 {
        bail!("need at least 2 actors and 1 client");
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let wasm = std::fs::read(&args.guest)
        .with_context(|| format!("read {} (run scripts/chaos.sh)", args.guest.display()))?;
    if !args.dwell.exists() {
        bail!("{} not found (run scripts/chaos.sh)", args.dwell.display());
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("dwell-chaos-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let began = Instant::now();
    println!(
        "dwell-chaos: seed {seed}, {} kills at most within {} s, {} clients over {} actors; data and log in {}",
        args.kills,
        args.seconds,
        args.clients,
        args.actors,
        dir.display()
    );

    let receiver = receiver::Receiver::start(SECRET, 10)?;
    let mut dwell = Dwell::new(
        &args.dwell,
        &dir,
        vec![
            "--allow-private-net".into(),
            "--allow-http".into(),
            receiver.addr.clone(),
            "--webhook-secret".into(),
            SECRET.into(),
        ],
    );
    let mut violations: Vec<Violation> = Vec::new();
    let mut kills = Kills::default();

    // The first start on the empty directory creates the default tenant and writes its
    // key: kill it a few times on the way, then let it finish; the key must work.
    let mut rng = Rng::new(seed);
    for _ in 0..args.first_start_kills {
        dwell.spawn()?;
        let up = dwell.wait_listening(Duration::from_millis(rng.below(50)));
        match dwell.kill()? {
            Ended::Killed => {
                kills.total += 1;
                kills.first_start += 1;
                if matches!(up, Ok(None)) {
                    kills.during_startup += 1;
                } else {
                    kills.under_load += 1;
                }
            }
            Ended::ExitedBefore(code, signal) => violations.push(violation(
                Class::ServerExit,
                None,
                format!(
                    "the first start exited by itself (code {code:?}, signal {signal:?}): {up:?}"
                ),
            )),
        }
    }
    dwell.spawn()?;
    let Some(base) = dwell.wait_listening(Duration::from_secs(120))? else {
        bail!(
            "dwell did not start within 120 s; see {}",
            dwell.log.display()
        );
    };
    let key = std::fs::read_to_string(dwell.data.join("default-tenant.key"))
        .context("the default tenant's key")?
        .trim()
        .to_owned();
    let deployed = Api::new(&base, &key).send(
        "PUT",
        &format!("/v1/modules/{MODULE}"),
        &[("content-type".into(), "application/wasm".into())],
        Some(&wasm),
    );
    match deployed {
        Ok(a) if a.status == 200 || a.status == 201 => {}
        other => bail!("deploying the checker guest: {other:?}"),
    }

    let shared = Arc::new(Shared::new(
        key.clone(),
        seed,
        args.actors,
        receiver.addr.clone(),
        args.inject.contains(&Inject::Double),
    ));
    shared.serving(&base);
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let shared = shared.clone();
            std::thread::spawn(move || load::client(i, shared))
        })
        .collect();

    // The kill loop.
    let deadline = began + Duration::from_secs(args.seconds);
    let mut start_estimate = Duration::from_millis(300);
    let mut forced_misses = 0u32;
    let mut base = base;
    let mut printed = 0;
    while kills.total < args.kills && Instant::now() < deadline {
        let uptime = Duration::from_millis(100 + rng.below(args.max_uptime_ms.max(1)));
        std::thread::sleep(uptime.min(deadline.saturating_duration_since(Instant::now())));
        // Mostly a plain SIGKILL; sometimes SIGKILL in the middle of a clean stop.
        let during_stop = rng.chance(args.shutdown_kills);
        if during_stop {
            dwell.sigterm()?;
            std::thread::sleep(Duration::from_millis(rng.below(100)));
        }
        shared.down();
        match dwell.kill()? {
            Ended::Killed if during_stop => {
                kills.total += 1;
                kills.during_stop += 1;
            }
            Ended::Killed => {
                kills.total += 1;
                kills.under_load += 1;
            }
            Ended::ExitedBefore(Some(0), _) if during_stop => kills.clean_stops += 1,
            Ended::ExitedBefore(code, signal) => violations.push(violation(
                Class::ServerExit,
                None,
                format!(
                    "the server exited by itself while serving (code {code:?}, signal {signal:?}; SIGTERM sent: {during_stop})"
                ),
            )),
        }
        if args.verbose {
            let how = if during_stop {
                "during a clean stop"
            } else {
                "under load"
            };
            println!("kill {} {how} after {uptime:?}", kills.total);
        }
        // Start again; sometimes kill it again before it listens.
        let mut failures = 0;
        loop {
            dwell.spawn()?;
            let started = Instant::now();
            // At least one start-up kill per run, then a share of the restarts.
            // A start can be faster than the estimate (it is measured through the log
            // pipe), so each forced attempt that still found it listening halves the
            // window; after a few the kill comes right after the spawn.
            let first = kills.during_startup == 0 && kills.total >= 3;
            if kills.total < args.kills && (first || rng.chance(args.startup_kills)) {
                let window = if first {
                    (start_estimate.as_millis() as u64) >> forced_misses.min(63)
                } else {
                    start_estimate.as_millis() as u64
                };
                let wait = Duration::from_millis(rng.below(window + 1));
                let up = dwell.wait_listening(wait);
                let before_listening = matches!(up, Ok(None));
                match dwell.kill()? {
                    Ended::Killed if before_listening => {
                        kills.total += 1;
                        kills.during_startup += 1;
                    }
                    Ended::Killed => {
                        kills.total += 1;
                        kills.under_load += 1;
                        forced_misses += u32::from(first);
                    }
                    Ended::ExitedBefore(code, signal) => violations.push(violation(
                        Class::ServerExit,
                        None,
                        format!("the server exited by itself while starting (code {code:?}, signal {signal:?}): {up:?}"),
                    )),
                }
                if args.verbose {
                    let when = if before_listening {
                        "during start-up"
                    } else {
                        "right after start-up"
                    };
                    println!("kill {} {when}, {wait:?} after the start", kills.total);
                }
                continue;
            }
            match dwell.wait_listening(Duration::from_secs(120)) {
                Ok(Some(b)) => {
                    start_estimate = started.elapsed();
                    kills.longest_start = kills.longest_start.max(start_estimate);
                    base = b;
                    shared
                        .era
                        .store(kills.total / args.era_kills.max(1), Ordering::Relaxed);
                    shared.serving(&base);
                    break;
                }
                Ok(None) => {
                    violations.push(violation(
                        Class::ServerExit,
                        None,
                        "the server did not listen within 120 s of its start",
                    ));
                }
                Err(e) => violations.push(violation(Class::ServerExit, None, format!("{e:#}"))),
            }
            let _ = dwell.kill();
            failures += 1;
            if failures >= 3 {
                bail!(
                    "the server failed to start 3 times in a row: {:?}; see {}",
                    violations.last(),
                    dwell.log.display()
                );
            }
        }
        if kills.total / 10 > printed / 10 && !args.verbose {
            printed = kills.total;
            println!(
                "  {} kills ({} during start-up), {:.0} s",
                kills.total,
                kills.during_startup,
                began.elapsed().as_secs_f64()
            );
        }
    }
    let kill_phase = began.elapsed();

    // Stop the clients; the server that is up now is the final one.
    shared.finish();
    let mut ledger: Vec<Msg> = Vec::new();
    for c in clients {
        match c.join() {
            Ok(l) => ledger.extend(l),
            Err(_) => bail!("a client thread panicked"),
        }
    }
    let api = Api::new(&base, &key);
    // A careful client sends what got no answer again, with the same key.
    let mut retried = 0;
    for m in ledger
        .iter_mut()
        .filter(|m| m.outcome == Outcome::Unknown && m.retry && m.idempotency_key().is_some())
    {
        for _ in 0..5 {
            let r = m.send(&api);
            m.record(&r);
            match r {
                Ok(a) if a.status == 503 => std::thread::sleep(Duration::from_millis(300)),
                Ok(_) => break,
                Err(e) => bail!("the final server does not answer: {e}"),
            }
        }
        retried += 1;
    }
    if args.inject.contains(&Inject::Lost) {
        for i in 0..3 {
            let mut m = ledger[i * ledger.len() / 4].clone();
            m.id = shared.id();
            m.kind = Kind::Event;
            m.as_call = false;
            m.target = None;
            m.outcome = Outcome::Acked;
            m.injected = Some(Injected::Lost);
            m.reply = None;
            ledger.push(m);
        }
    }

    println!(
        "drain: {} messages sent, waiting for the server to apply them",
        ledger.len()
    );
    let drain_began = Instant::now();
    let (snaps, drained) = check::drain(
        &api,
        &ledger,
        || receiver.deliveries(),
        Duration::from_secs(args.drain_seconds),
    )
    .map_err(anyhow::Error::msg)?;
    violations.extend(drained);
    let drain_time = drain_began.elapsed();

    let mut forged = BTreeSet::new();
    if args.inject.contains(&Inject::ForgedCallback) {
        let real = receiver
            .deliveries()
            .into_iter()
            .find(|d| d.accepted && d.message_id().is_some());
        if let (Some(d), Some(body)) = (real.clone(), real.and_then(|d| d.body)) {
            receiver::forge(&receiver.addr, &d.path, &body)?;
            forged.extend(d.message_id());
        }
    }
    let deliveries = receiver.deliveries();
    let (found, checked) = check::check(&ledger, &snaps, &deliveries, &api);
    violations.extend(checked);

    let (replayed, v) = check::replay(&api, &ledger, &snaps, args.replays);
    violations.extend(v);
    let actors = check::actors_of(&ledger);
    let after_replay = check::read_all(&api, &actors).map_err(anyhow::Error::msg)?;
    violations.extend(check::unchanged(
        &snaps,
        &after_replay,
        Class::Replay,
        "after the replays",
    ));

    // A clean stop and start must change nothing and need no repair.
    shared.down();
    match dwell.terminate(Duration::from_secs(30))? {
        Some(s) if s.success() => {}
        other => violations.push(violation(
            Class::CleanRestart,
            None,
            format!("SIGTERM did not end the server cleanly within 30 s: {other:?}"),
        )),
    }
    dwell.spawn()?;
    let Some(base) = dwell.wait_listening(Duration::from_secs(120))? else {
        bail!(
            "dwell did not start after the clean stop; see {}",
            dwell.log.display()
        );
    };
    let last_start = std::fs::read_to_string(&dwell.log)
        .unwrap_or_default()
        .rsplit("---- dwell-chaos: start")
        .next()
        .unwrap_or_default()
        .to_owned();
    if last_start.contains("not closed cleanly") {
        violations.push(violation(
            Class::CleanRestart,
            None,
            "the start after a clean SIGTERM had to repair the data file",
        ));
    }
    let api = Api::new(&base, &key);
    let after_restart = check::read_all(&api, &actors).map_err(anyhow::Error::msg)?;
    violations.extend(check::unchanged(
        &after_replay,
        &after_restart,
        Class::CleanRestart,
        "after a clean restart",
    ));
    let (replayed_after, v) = check::replay(&api, &ledger, &after_restart, 200);
    violations.extend(v);
    let _ = dwell.terminate(Duration::from_secs(30));

    // The run must have tested something.
    let mut acked: BTreeMap<Kind, u64> = Kind::ALL.iter().map(|k| (*k, 0)).collect();
    let (mut unknown, mut refused) = (0, 0);
    for m in ledger.iter().filter(|m| m.injected.is_none()) {
        match m.outcome {
            Outcome::Acked => *acked.entry(m.kind).or_default() += 1,
            Outcome::Unknown => unknown += 1,
            Outcome::Refused => refused += 1,
        }
    }
    let in_flight = shared.kills_in_flight();
    let mut vacuous = Vec::new();
    for (k, n) in &acked {
        if *n == 0 {
            vacuous.push(format!("no {} was acknowledged", k.name()));
        }
    }
    for (what, n) in [
        ("kills", kills.total),
        ("timers fired", found.timers_fired),
        ("asks answered", found.asks_answered),
        ("callbacks delivered", found.callbacks_delivered),
        ("replays", replayed),
    ] {
        if n == 0 {
            vacuous.push(format!("no {what}"));
        }
    }
    if kills.total >= 10 && kills.during_startup == 0 {
        vacuous.push("no kill during start-up".into());
    }
    if kills.total >= 10 && in_flight == 0 {
        vacuous.push("no kill hit a message in flight".into());
    }
    violations.extend(
        vacuous
            .into_iter()
            .map(|d| violation(Class::Vacuous, None, d)),
    );

    // Summary.
    let elapsed = began.elapsed();
    println!("\n== dwell-chaos summary (seed {seed}) ==");
    println!(
        "kills: {} ({} of the first start; {} during start-up, {} under load, {} during a clean stop; {} with messages in flight; {} clean stops finished first), {} starts, longest start {:.2} s, kill phase {:.1} s{}",
        kills.total,
        kills.first_start,
        kills.during_startup,
        kills.under_load,
        kills.during_stop,
        in_flight,
        kills.clean_stops,
        dwell.starts,
        kills.longest_start.as_secs_f64(),
        kill_phase.as_secs_f64(),
        if kills.total < args.kills {
            format!(
                " (stopped by --seconds {} before {} kills)",
                args.seconds, args.kills
            )
        } else {
            String::new()
        }
    );
    println!(
        "acknowledged: {}, total {}",
        acked
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect::<Vec<_>>()
            .join(", "),
        acked.values().sum::<u64>()
    );
    println!(
        "unanswered: {unknown} (applied {}, not applied {}); re-sent with their key at the end: {retried}; refused 503: {refused}",
        found.unknown_applied, found.unknown_not_applied
    );
    println!(
        "timers fired {}, asks answered {}, callbacks delivered {} ({} deliveries, {} requests delivered more than once)",
        found.timers_fired,
        found.asks_answered,
        found.callbacks_delivered,
        found.deliveries,
        found.redeliveries
    );
    println!(
        "replayed with Idempotency-Key: {replayed}, and {replayed_after} after a clean restart"
    );
    println!(
        "duration: {:.1} s (drain {:.1} s)",
        elapsed.as_secs_f64(),
        drain_time.as_secs_f64()
    );

    let by_id: HashMap<u64, &Msg> = ledger.iter().map(|m| (m.id, m)).collect();
    let (expected, real): (Vec<&Violation>, Vec<&Violation>) = violations
        .iter()
        .partition(|v| check::is_injected(v, &by_id, &forged));
    println!("violations: {}", real.len());
    for v in real.iter().take(50) {
        println!("  {v}");
    }
    if real.len() > 50 {
        println!("  … and {} more", real.len() - 50);
    }
    let mut ok = real.is_empty();
    if !args.inject.is_empty() {
        println!("injected faults caught: {}", expected.len());
        for v in expected.iter().take(10) {
            println!("  {v}");
        }
        for inject in &args.inject {
            let caught = expected.iter().any(|v| match inject {
                Inject::Double => v.class == Class::AppliedTwice,
                Inject::Lost => v.class == Class::Lost,
                Inject::ForgedCallback => {
                    v.class == Class::CallbackSignature || v.class == Class::CallbackWebhookId
                }
            });
            if !caught {
                println!("  NOT CAUGHT: {inject:?}");
                ok = false;
            }
        }
        println!(
            "self-test {}",
            if ok {
                "passed: every injected fault was caught"
            } else {
                "FAILED"
            }
        );
    }
    if ok && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("data and server log kept in {}", dir.display());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

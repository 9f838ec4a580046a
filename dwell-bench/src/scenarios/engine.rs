//! Scenario 7, `engine`: the engine in-process (no HTTP), events in, turns applied per
//! second, in a cold phase (many actors) and a warm one (a few).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use dwell::domain::{ActorId, TenantId};
use dwell::engine::{Engine, EngineConfig};

use crate::pg::PgCounters;
use crate::report::Outcome;
use crate::util::{int, rate_str, unix_ms};

use super::Bench;

#[derive(serde::Deserialize)]
struct CounterState {
    total: i64,
}

/// Scenario 7: the engine in-process, events in, turns applied. Two phases on one
/// engine: in `cold` the events go to many actors (nearly every turn starts a runner and
/// an instance), in `warm` to a few (runners take batches of turns on a warm instance).
pub(crate) fn scenario_engine(b: &mut Bench, out: &mut Outcome) -> anyhow::Result<()> {
    let n = b.size(b.args.engine_events, 20_000, 200_000);
    let conc = b.args.engine_concurrency.max(1);
    let dir = b.fresh_dir("engine")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-engine")
        .build()?;
    let store = crate::pg::store_for(&b.args, &dir)?;
    let config = EngineConfig {
        data_dir: dir.clone(),
        ..EngineConfig::default()
    };
    let (max_active, batch) = (config.max_active_actors, config.batch_per_actor);
    let engine = {
        let _g = rt.enter();
        let storage = dwell::storage::open(&dir, store.as_deref())?;
        Engine::start(config, storage)?
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
        let before = store.as_deref().map(PgCounters::read).transpose()?;
        let r = engine_phase(&rt, &engine, Arc::new(ids), n, conc, b.deadline())?;
        let after = store.as_deref().map(PgCounters::read).transpose()?;
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
        let mut cost = Value::Null;
        if let (Some(c0), Some(c1)) = (before, after) {
            // Per event: its enqueue and its turn (each event is one turn).
            let turns = r.accepted.max(1) as f64;
            let (stmts, rows, wal) = (
                r.statements as f64 / turns,
                c1.rows.saturating_sub(c0.rows) as f64 / turns,
                c1.wal.saturating_sub(c0.wal) as f64 / turns,
            );
            out.row(
                "engine",
                &format!("{phase}: PostgreSQL cost per turn (its enqueue included)"),
                format!(
                    "{stmts:.1} statements (round trips), {rows:.1} rows written, {wal:.0} WAL bytes; {:.1} turns per commit",
                    r.accepted as f64 / r.commits.max(1) as f64
                ),
                &cond,
            );
            cost = json!({"statements_per_turn": stmts, "rows_per_turn": rows, "wal_bytes_per_turn": wal});
        }
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
                "postgres": cost,
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
    /// SQL statements the writer executed (PostgreSQL).
    statements: u64,
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
                        .send_event(&ids[(i % actors) as usize], body.clone(), None, None)
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
        statements: stats1.statements - stats0.statements,
    })
}

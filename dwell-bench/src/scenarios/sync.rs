//! Scenario 2, `sync`: request/reply calls to distinct actors at each `--concurrency`;
//! calls/s and latency percentiles; every reply is checked.

use std::time::Instant;

use serde_json::json;

use crate::client::{Client, Target};
use crate::load::{Load, closed_loop_over};
use crate::report::Outcome;
use crate::server::Server;
use crate::util::{int, ms_str, pct, rate_str};

use super::{ADD_ONE, Bench, reply_total};

/// Scenario 2: Request/reply calls to distinct actors.
pub(crate) fn scenario_sync(b: &mut Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
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
pub(crate) fn sync_distinct(
    t: &Target,
    conc: usize,
    n: u64,
    deadline: Instant,
    prefix: &str,
) -> Load {
    sync_distinct_over(std::slice::from_ref(t), conc, n, deadline, prefix)
}

/// [`sync_distinct`] over several servers: worker `w` calls through `targets[w % len]`.
pub(crate) fn sync_distinct_over(
    targets: &[Target],
    conc: usize,
    n: u64,
    deadline: Instant,
    prefix: &str,
) -> Load {
    closed_loop_over(targets, conc, n, deadline, |w| {
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

//! Scenario 3, `hot`: request/reply calls against one actor at each `--concurrency`; the
//! replies must be exactly 1..=N.

use serde_json::json;

use crate::client::Client;
use crate::load::{closed_loop, drained, poll_until, state_i64};
use crate::report::Outcome;
use crate::server::Server;
use crate::util::{int, ms_str, pct, rate_str};

use super::{ADD_ONE, Bench, reply_total};

/// Scenario 3: Request/reply calls against one hot actor.
pub(crate) fn scenario_hot(b: &Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
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

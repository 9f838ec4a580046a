//! Scenario 4, `rate`: open-loop calls at half the best rate of `sync`; latency measured
//! from the scheduled send time (no coordinated omission).

use anyhow::bail;
use serde_json::json;

use crate::client::Client;
use crate::load::{drained, open_loop, poll_until, state_i64};
use crate::report::Outcome;
use crate::server::Server;
use crate::util::{ms_str, pct, rate_str};

use super::sync::sync_distinct;
use super::{ADD_ONE, Bench, reply_total};

/// Scenario 4: Latency at a fixed rate (half the best of `sync`).
pub(crate) fn scenario_rate(b: &mut Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
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

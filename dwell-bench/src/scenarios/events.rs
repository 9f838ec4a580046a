//! Scenario 1, `events`: durable one-way events into many distinct actors; acknowledged
//! and applied events/s; every actor's total is checked.

use serde_json::{Value, json};

use crate::client::Client;
use crate::load::{closed_loop, drained, poll_until, state_i64};
use crate::report::Outcome;
use crate::server::Server;
use crate::util::{int, ms_str, pct, rate_str, unix_ms};

use super::{ADD_ONE, Bench, expect_202};

/// Scenario 1: Durable events into many distinct actors.
pub(crate) fn scenario_events(b: &Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
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

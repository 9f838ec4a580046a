//! Scenario 5, `timers`: the `ticker` guest sets many timers due within a few seconds;
//! lateness as recorded by the guest (turn start minus due time); each timer must fire
//! exactly once.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::client::Client;
use crate::load::{closed_loop, drained, poll_until, state_i64};
use crate::report::Outcome;
use crate::server::Server;
use crate::util::{int, pct, rate_str, unix_ms};

use super::{Bench, expect_202};

/// Scenario 5: many timers over many `ticker` actors, all due within a few seconds.
pub(crate) fn scenario_timers(b: &Bench, srv: &Server, out: &mut Outcome) -> anyhow::Result<()> {
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

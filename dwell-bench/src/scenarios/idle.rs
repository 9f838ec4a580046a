//! Scenario 6, `idle`: many actors with one event each: server RSS, data-file size, then
//! a SIGTERM and a restart on the same data, timed until the first served call.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{dir_size, mib};

use crate::client::Client;
use crate::load::{closed_loop, drained, poll_until, state_i64};
use crate::report::Outcome;
use crate::server::Server;
use crate::util::{int, rate_str};

use super::{ADD_ONE, Bench, expect_202, reply_total};

/// Scenario 6: Idle actors: memory, file size, restart.
pub(crate) fn scenario_idle(b: &mut Bench, out: &mut Outcome) -> anyhow::Result<()> {
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
    let (stop_took, status) = srv.stop(Duration::from_secs(60));
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

//! Scenario 8, `cluster` (needs `--postgres`): the same request/reply calls as `sync`,
//! to distinct actors, on PostgreSQL three ways in one run — one node without cluster
//! mode, a cluster of one node, a cluster of three nodes on this machine (each load
//! connection on one node, round-robin; a call for an actor another node runs is
//! forwarded there). Per way and concurrency: calls/s, latency p50/p99, the share of
//! calls forwarded (from the partition owners the cluster reports), and what the calls
//! cost — database commits/s, rows written and WAL bytes per turn, CPU time per call of
//! the nodes and of the PostgreSQL server. On one machine the three nodes share its
//! cores with the database: this measures the cluster's overhead, not its scaling; the
//! per-call costs are the constants of README's capacity model.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::client::Target;
use crate::pg::{PgCounters, server_cpu, store_for};
use crate::report::Outcome;
use crate::server::Server;
use crate::util::{int, ms_str, pct, rate_str};

use super::sync::sync_distinct_over;
use super::{ADD_ONE, Bench, reply_total};

const ADMIN: &str = "dw_admin_bench_cluster_key_0123456789abcdef";
const SECRETS: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WEBHOOK: &str = "whsec_ZmlsZXNlY3JldGZpbGVzZWNyZXRmaWxlc2VjcmV0";
const PARTITIONS: u32 = 256;

/// One way of running: its name, its node count, whether in cluster mode.
const WAYS: [(&str, usize, bool); 3] = [
    ("1 node, no cluster", 1, false),
    ("cluster of 1", 1, true),
    ("cluster of 3", 3, true),
];

pub(crate) fn scenario_cluster(b: &mut Bench, out: &mut Outcome) -> anyhow::Result<()> {
    let Some(pg) = b.args.postgres.clone() else {
        bail!("the cluster scenario runs on PostgreSQL: give --postgres URL");
    };
    let n = b.size(b.args.sync_calls, 5_000, 100_000);
    let mut ways = Vec::new();
    for (way, nodes, cluster) in WAYS {
        for (level, &conc) in b.args.concurrency.clone().iter().enumerate() {
            eprintln!("   {way}, c={conc}");
            let got = run_way(b, way, nodes, cluster, conc, n, level)?;
            let load = &got.load;
            out.problems
                .extend(load.problems(&format!("cluster {way} c={conc}"), n));
            let secs = load.elapsed.as_secs_f64();
            let calls = load.ok.max(1) as f64;
            let cond = format!(
                "{way} on one PostgreSQL (the bench's server, a fresh database){}; {} calls, concurrency {conc}, each connection on one node (round-robin) and its own 4 actors, reply checked",
                if cluster {
                    format!(", {PARTITIONS} partitions, lease 5 s")
                } else {
                    String::new()
                },
                int(n)
            );
            let label = |m: &str| format!("{m}, {way}, c={conc}");
            out.row("cluster", &label("calls/s"), rate_str(load.per_s()), &cond);
            out.row(
                "cluster",
                &label("latency p50 / p99"),
                format!(
                    "{} / {}",
                    ms_str(pct(&load.lat_us, 0.5)),
                    ms_str(pct(&load.lat_us, 0.99))
                ),
                &cond,
            );
            out.row(
                "cluster",
                &label("calls forwarded"),
                format!("{:.0}%", got.forwarded * 100.0),
                &cond,
            );
            let commits = got.db.commits as f64;
            out.row(
                "cluster",
                &label("database commits/s; per call"),
                format!("{:.0}; {:.2}", commits / secs, commits / calls),
                &cond,
            );
            out.row(
                "cluster",
                &label("rows written / WAL bytes per call"),
                format!(
                    "{:.1} / {:.0}",
                    got.db.rows as f64 / calls,
                    got.db.wal as f64 / calls
                ),
                &cond,
            );
            out.row(
                "cluster",
                &label("CPU per call: nodes / PostgreSQL"),
                format!(
                    "{:.0} µs / {:.0} µs",
                    got.node_cpu.as_secs_f64() * 1e6 / calls,
                    got.db_cpu.as_secs_f64() * 1e6 / calls
                ),
                &cond,
            );
            ways.push(json!({
                "way": way, "nodes": nodes, "cluster": cluster, "concurrency": conc,
                "calls": n, "load": load.json(), "forwarded_share": got.forwarded,
                "db_commits": got.db.commits, "db_rows": got.db.rows, "db_wal_bytes": got.db.wal,
                "node_cpu_s": got.node_cpu.as_secs_f64(), "db_cpu_s": got.db_cpu.as_secs_f64(),
            }));
        }
    }
    out.set("cluster", json!({ "postgres": redact(&pg), "ways": ways }));
    Ok(())
}

/// What one way at one concurrency measured.
struct Measured {
    load: crate::load::Load,
    forwarded: f64,
    /// The database's counters over the load (after minus before).
    db: PgCounters,
    node_cpu: Duration,
    db_cpu: Duration,
}

fn run_way(
    b: &mut Bench,
    way: &str,
    nodes: usize,
    cluster: bool,
    conc: usize,
    n: u64,
    level: usize,
) -> anyhow::Result<Measured> {
    let tag = format!("cluster{nodes}{}c{conc}", if cluster { "m" } else { "s" });
    let dirs: Vec<_> = (0..nodes)
        .map(|i| b.fresh_dir(&format!("{tag}-n{}", i + 1)))
        .collect::<anyhow::Result<_>>()?;
    let store = store_for(&b.args, &dirs[0])?.context("--postgres")?;
    let env = [("DWELL_ADMIN_KEY".to_owned(), ADMIN.to_owned())];
    let mut servers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let more: Vec<String> = if cluster {
            [
                "--node-id",
                &format!("n{}", i + 1),
                "--advertise",
                "127.0.0.1:0",
                "--partitions",
                &PARTITIONS.to_string(),
                "--lease",
                "5s",
                "--secrets-key",
                SECRETS,
                "--webhook-secret",
                WEBHOOK,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        } else {
            Vec::new()
        };
        let (srv, _) = Server::start_with(&b.args, dir, Some(store.clone()), &more, &env)
            .with_context(|| format!("{way}: node {}", i + 1))?;
        servers.push(srv);
    }
    let key = servers[0].key().context("the first node's tenant key")?;
    let targets: Vec<Target> = servers
        .iter()
        .map(|s| Target {
            auth: Some(key.clone()),
            ..s.target(b.args.client)
        })
        .collect();
    let admin = |s: &Server| Target {
        auth: Some(ADMIN.into()),
        ..s.target(b.args.client)
    };
    let ids: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    if cluster {
        settle(&admin(&servers[0]), &ids)?;
    }
    servers[0].deploy(b.args.client, "counter", &b.counter)?;
    for (i, t) in targets.iter().enumerate() {
        let mut c = t.client();
        let until = Instant::now() + Duration::from_secs(10);
        while reply_total(c.post_json(&format!("/v1/actors/counter/warm-{i}"), ADD_ONE)).is_err() {
            if Instant::now() > until {
                bail!("{way}: the counter is not callable through node {}", i + 1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let prefix = format!("k{level}{tag}");
    let forwarded = if cluster {
        let view = admin(&servers[0])
            .client()
            .get_json("/v1/cluster")
            .map_err(anyhow::Error::msg)?
            .context("GET /v1/cluster")?;
        forwarded_share(&view, &ids, conc, &prefix)
    } else {
        0.0
    };

    let cpu = |servers: &[Server]| servers.iter().map(Server::cpu).sum::<Duration>();
    let before = PgCounters::read(&store)?;
    let (node0, db0) = (cpu(&servers), server_cpu(&store)?);
    let load = sync_distinct_over(&targets, conc, n, b.deadline(), &prefix);
    let (node1, db1) = (cpu(&servers), server_cpu(&store)?);
    let after = PgCounters::read(&store)?;
    for s in &mut servers {
        s.stop(Duration::from_secs(20));
    }
    Ok(Measured {
        load,
        forwarded,
        db: PgCounters {
            wal: after.wal.saturating_sub(before.wal),
            rows: after.rows.saturating_sub(before.rows),
            commits: after.commits.saturating_sub(before.commits),
        },
        node_cpu: node1.saturating_sub(node0),
        db_cpu: db1.saturating_sub(db0),
    })
}

/// Wait until every partition has a live owner and the nodes hold about fair shares.
fn settle(admin: &Target, ids: &[String]) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    let mut c = admin.client();
    loop {
        if let Some(view) = c.get_json("/v1/cluster").map_err(anyhow::Error::msg)? {
            let owners = view["owners"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let per: Vec<usize> = ids
                .iter()
                .map(|id| {
                    owners
                        .iter()
                        .filter(|o| o["node"] == id.as_str() && o["live"] == true)
                        .count()
                })
                .collect();
            // Shares of ceil(partitions / nodes) leave the last node a few less.
            let fair = PARTITIONS as usize / ids.len();
            if per.iter().sum::<usize>() == PARTITIONS as usize
                && per.iter().all(|p| *p + ids.len() >= fair)
            {
                return Ok(());
            }
        }
        if Instant::now() > until {
            bail!("the cluster did not settle within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The share of calls sent to a node that does not run their actor: worker `w` calls
/// its 4 actors through node `w % nodes`.
fn forwarded_share(view: &Value, ids: &[String], conc: usize, prefix: &str) -> f64 {
    let count = view["partitions"].as_u64().unwrap_or(u64::from(PARTITIONS)) as u32;
    let mut away = 0;
    for w in 0..conc {
        let node = &ids[w % ids.len()];
        for j in 0..4 {
            let p = dwell_types::placement::partition_of(
                &format!("default/counter/{prefix}-w{w}-{j}"),
                count,
            );
            away += usize::from(view["owners"][p as usize]["node"] != node.as_str());
        }
    }
    away as f64 / (conc * 4) as f64
}

/// The URL without a password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

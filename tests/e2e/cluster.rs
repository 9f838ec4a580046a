//! Cluster mode: three real `dwell serve` nodes on one PostgreSQL (the suite's server,
//! a database of their own), clients spreading calls over every node. A module deployed
//! through one node is callable through all; a node `kill -9`ed under load loses its
//! partitions to the others within the lease + 3 s; a node told to stop (SIGTERM) hands
//! its partitions over at once; every acknowledged increment is counted exactly once;
//! asks between actors of different nodes are answered once; timers due during the
//! failover fire once, never early; a request is answered (long poll) through any node;
//! callbacks under way during the failover arrive at least once,
//! each request's deliveries under one `webhook-id`. The second test, on a PostgreSQL
//! server of its own: a node paused (SIGSTOP) past its lease loses its partitions and
//! its late commits are refused by the fence (its counter goes up) with none landing;
//! PostgreSQL restarted under load, the nodes recover by themselves; a node joins and
//! another leaves, partitions move and no actor waits long (the longest gap is printed).
//! Runs on the PostgreSQL pass of the suite (`DWELL_TEST_POSTGRES`).
//! Long because the two scenarios share their clients, their checks and the nodes'
//! set-up, and each step reads best next to the one it follows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dwell_testkit::{ServerOptions, ServerProcess};
use serde_json::{Value, json};

use crate::fake::{FakeService, answer};
use crate::harness::{guest, test_postgres};

const ADMIN: &str = "dw_admin_cluster_test_key_0123456789abcdef";
const SECRETS: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WEBHOOK: &str = "whsec_ZmlsZXNlY3JldGZpbGVzZWNyZXRmaWxlc2VjcmV0";
const LEASE: Duration = Duration::from_secs(2);
const PARTITIONS: u32 = 32;
const ACTORS: usize = 24;

struct Node {
    id: String,
    process: ServerProcess,
    base: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

/// `(status, body)`, or the wire error.
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut b = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {key}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(serde_json::to_vec(v).unwrap()),
        None => b.body(Vec::new()),
    }
    .unwrap();
    let mut resp = agent.run(req).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp.body_mut().read_to_vec().unwrap_or_default();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn start(data: &PathBuf, store: &str, id: &str, deploy: bool, extra: &[String]) -> Node {
    let mut o = ServerOptions::new(env!("CARGO_BIN_EXE_dwell"), data);
    o.log = data.with_extension("log");
    o.args = [
        "--store",
        store,
        "--node-id",
        id,
        "--advertise",
        "127.0.0.1:0",
        "--partitions",
        &PARTITIONS.to_string(),
        "--lease",
        "2s",
        "--secrets-key",
        SECRETS,
        "--webhook-secret",
        WEBHOOK,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(extra.iter().cloned())
    .collect();
    if deploy {
        o.args.extend([
            "--deploy".into(),
            format!("counter={}", guest("counter").display()),
            "--deploy".into(),
            format!("probe={}", guest("probe").display()),
        ]);
    }
    o.env = vec![
        ("DWELL_ADMIN_KEY".into(), ADMIN.into()),
        (
            "DWELL_LOG".into(),
            "info,wasmtime=warn,cranelift=warn".into(),
        ),
    ];
    let process = ServerProcess::start(o).unwrap_or_else(|e| panic!("node {id}: {e}"));
    Node {
        id: id.into(),
        base: process.base().to_owned(),
        process,
    }
}

/// The cluster as `base` sees it.
fn cluster(agent: &ureq::Agent, base: &str) -> Value {
    let (status, v) = send(
        agent,
        "GET",
        &format!("{base}/v1/cluster"),
        ADMIN,
        &[],
        None,
    )
    .expect("GET /v1/cluster");
    assert_eq!(status, 200, "{v}");
    v
}

/// The node that owns the default tenant's actor `module/key` in `view`.
fn owner_of(view: &Value, module: &str, key: &str) -> String {
    let p = dwell_types::placement::partition_of(&format!("default/{module}/{key}"), PARTITIONS);
    view["owners"][p as usize]["node"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Partitions per live owner, and whether every partition has one.
fn owners(view: &Value) -> (BTreeMap<String, usize>, bool) {
    let live: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["live"] == true)
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    let mut per = BTreeMap::new();
    let mut all = true;
    for o in view["owners"].as_array().unwrap() {
        let node = o["node"].as_str().unwrap();
        if live.contains(&node) {
            *per.entry(node.to_owned()).or_insert(0) += 1;
        } else {
            all = false;
        }
    }
    (
        per,
        all && view["owners"].as_array().unwrap().len() == PARTITIONS as usize,
    )
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if check() {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {within:?}");
}

/// What the clients were told: acknowledged increments per actor, when each actor last
/// acknowledged, and the longest time an actor went without (since [`Acks::watch`]).
#[derive(Default)]
struct Acks {
    count: BTreeMap<String, i64>,
    last: BTreeMap<String, Instant>,
    longest: Option<(Duration, String)>,
}

impl Acks {
    fn ack(&mut self, actor: &str) {
        *self.count.entry(actor.to_owned()).or_insert(0) += 1;
        let now = Instant::now();
        if let Some(prev) = self.last.insert(actor.to_owned(), now)
            && let Some((longest, who)) = &mut self.longest
            && now - prev > *longest
        {
            *longest = now - prev;
            *who = actor.to_owned();
        }
    }

    /// Start measuring the longest gap between two acknowledgements of one actor.
    fn watch(&mut self) {
        self.longest = Some((Duration::ZERO, String::new()));
    }

    fn total(&self) -> i64 {
        self.count.values().sum()
    }
}

/// Six [`client`]s spreading increments over `bases` until [`Clients::finish`].
struct Clients {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acks>>,
    retries: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(bases: &Arc<Mutex<Vec<String>>>, key: &str) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Acks::default()));
        let retries = Arc::new(AtomicU64::new(0));
        let threads = (0..6)
            .map(|c| {
                let (b, k, s, a, r) = (
                    bases.clone(),
                    key.to_owned(),
                    stop.clone(),
                    acked.clone(),
                    retries.clone(),
                );
                std::thread::spawn(move || client(c, b, k, s, a, r))
            })
            .collect();
        Clients {
            stop,
            acked,
            retries,
            threads,
        }
    }

    /// Stop, and wait for every increment under way to be acknowledged.
    fn finish(self) {
        self.stop.store(true, Ordering::Release);
        for c in self.threads {
            c.join().expect("a client failed");
        }
    }
}

/// One client: increments of 1 to its actors through node after node, each with its own
/// Idempotency-Key, retried (same key) until acknowledged; counts what was acknowledged.
fn client(
    c: usize,
    bases: Arc<Mutex<Vec<String>>>,
    key: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acks>>,
    retries: Arc<AtomicU64>,
) {
    let agent = agent();
    let mut n = 0usize;
    while !stop.load(Ordering::Acquire) {
        let actor = format!("c{}", (c * 7 + n) % ACTORS);
        let idem = format!("client{c}-{n}");
        let t0 = Instant::now();
        loop {
            let base = {
                let b = bases.lock().unwrap();
                b[(c + n + retries.load(Ordering::Relaxed) as usize) % b.len()].clone()
            };
            let got = send(
                &agent,
                "POST",
                &format!("{base}/v1/actors/counter/{actor}"),
                &key,
                &[("idempotency-key", &idem)],
                Some(&json!({"add": 1})),
            );
            match got {
                Ok((200, v)) if v["total"].is_i64() => {
                    acked.lock().unwrap().ack(&actor);
                    break;
                }
                Ok((s, v)) if s == 503 || s == 421 || s == 502 || s == 202 => {
                    let _ = v;
                }
                Ok((s, v)) => panic!("client {c}: {s} {v}"),
                Err(_) => {}
            }
            retries.fetch_add(1, Ordering::Relaxed);
            assert!(
                t0.elapsed() < Duration::from_secs(40),
                "client {c}: increment {idem} never acknowledged"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n += 1;
    }
}

#[test]
fn noisy_cluster_three_nodes_failover_and_handover_lose_nothing() {
    let Some(pg) = test_postgres() else {
        eprintln!("cluster: runs on the PostgreSQL pass (DWELL_TEST_POSTGRES)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = dwell_testkit::database_url(&pg, "dwell_", &tmp.path().join("cluster")).unwrap();
    let agent = agent();
    // The callbacks' receiver: refuses (503, retry in 1 s) until told to accept.
    let accepting = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let receiver = {
        let (up, accepted) = (accepting.clone(), accepted.clone());
        FakeService::start(move |r, _| {
            if !up.load(Ordering::SeqCst) {
                return Some((503, vec![("retry-after".into(), "1".into())], "{}".into()));
            }
            let id = r.json()["request_id"].as_str().unwrap_or("").to_owned();
            *accepted.lock().unwrap().entry(id).or_insert(0) += 1;
            answer(200, "{}")
        })
    };
    let extra = [
        "--allow-private-net".to_owned(),
        "--allow-http".to_owned(),
        receiver.host_port(),
    ];
    let mut nodes = vec![start(&tmp.path().join("n1"), &store, "n1", true, &extra)];
    let key = std::fs::read_to_string(tmp.path().join("n1/default-tenant.key"))
        .unwrap()
        .trim()
        .to_owned();
    nodes.push(start(&tmp.path().join("n2"), &store, "n2", false, &extra));
    nodes.push(start(&tmp.path().join("n3"), &store, "n3", false, &extra));

    // ---- three nodes share the partitions fairly; every partition has a live owner
    let took = wait_for("a fair share each", Duration::from_secs(10), || {
        let (per, all) = owners(&cluster(&agent, &nodes[0].base));
        all && per.len() == 3 && per.values().all(|n| (10..=11).contains(n))
    });
    println!("cluster: 3 nodes hold their fair share {took:?} after the last start");
    let view = cluster(&agent, &nodes[1].base);
    assert_eq!(view["mode"], "cluster");
    assert_eq!(view["partitions"], PARTITIONS);
    assert!(view["owners"][0]["epoch"].as_i64().unwrap() >= 1);

    // `dwell cluster`: the nodes and the partitions each holds.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dwell"))
        .arg("cluster")
        .env("DWELL_URL", &nodes[2].base)
        .env("DWELL_ADMIN_KEY", ADMIN)
        .output()
        .expect("run dwell cluster");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("mode") && text.contains("cluster"), "{text}");
    for id in ["n1", "n2", "n3"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(id) && l.contains("true")),
            "{id} listed live: {text}"
        );
    }

    // ---- the module deployed through n1 is callable through every node, and a call
    // for an actor another node runs is forwarded there
    for node in &nodes {
        let took = wait_for("the module on every node", Duration::from_secs(2), || {
            matches!(
                send(
                    &agent,
                    "POST",
                    &format!("{}/v1/actors/counter/probe-{}", node.base, node.id),
                    &key,
                    &[],
                    Some(&json!({"add": 0}))
                ),
                Ok((200, _))
            )
        });
        println!(
            "cluster: counter callable through {} after {took:?}",
            node.id
        );
    }
    let a = &nodes[0].base;
    for k in 0..ACTORS {
        let (s, v) = send(
            &agent,
            "POST",
            &format!("{a}/v1/actors/counter/c{k}"),
            &key,
            &[],
            Some(&json!({"add": 0})),
        )
        .unwrap();
        assert_eq!((s, &v["total"]), (200, &json!(0)), "{v}");
    }
    // ---- asks between actors of different nodes go through the inbox, both ways
    let view = cluster(&agent, a);
    let mut crossing = 0;
    for i in 0..9 {
        let base = &nodes[i % 3].base;
        let (s, v) = send(
            &agent,
            "POST",
            &format!("{base}/v1/actors/probe/asker{i}"),
            &key,
            &[],
            Some(
                &json!({"op": "ask", "module": "probe", "key": format!("echo{i}"),
                         "body": {"op": "echo", "value": i}, "correlation": format!("c{i}")}),
            ),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        crossing += usize::from(
            owner_of(&view, "probe", &format!("asker{i}"))
                != owner_of(&view, "probe", &format!("echo{i}")),
        );
    }
    assert!(crossing > 0, "some asks cross nodes");
    let took = wait_for("every ask answered", Duration::from_secs(10), || {
        (0..9).all(|i| {
            let got = send(&agent, "POST", &format!("{a}/v1/actors/probe/asker{i}"), &key, &[], Some(&json!({"op": "get"})));
            matches!(got, Ok((200, v)) if v["asks"].as_array().map(Vec::len) == Some(1) && v["asks"][0]["reply"] == json!(i))
        })
    });
    println!(
        "cluster: 9 asks ({crossing} between actors of different nodes) answered, each once, within {took:?}"
    );

    // A forwarded request that arrives at a node that does not run the actor either is
    // refused, not run: 421.
    let view = cluster(&agent, a);
    let probe = (0..ACTORS)
        .map(|k| format!("c{k}"))
        .find(|k| owner_of(&view, "counter", k) != "n1")
        .expect("an actor another node runs");
    let (s, v) = send(
        &agent,
        "POST",
        &format!("{a}/v1/actors/counter/{probe}"),
        &key,
        &[("dwell-forwarded", "test")],
        Some(&json!({"add": 0})),
    )
    .unwrap();
    assert_eq!(s, 421, "{v}");
    assert_eq!(
        v["type"].as_str().map(|t| t.ends_with("misdirected")),
        Some(true),
        "{v}"
    );

    // ---- load over all three nodes
    let bases = Arc::new(Mutex::new(
        nodes.iter().map(|n| n.base.clone()).collect::<Vec<_>>(),
    ));
    let clients = Clients::start(&bases, &key);
    let (acked, retries) = (clients.acked.clone(), clients.retries.clone());
    std::thread::sleep(Duration::from_secs(3));

    // ---- timers due while a node fails: set now, due in 2.5 s
    for i in 0..12 {
        let base = &nodes[i % 3].base;
        let (s, v) = send(
            &agent,
            "POST",
            &format!("{base}/v1/actors/probe/timer{i}"),
            &key,
            &[],
            Some(&json!({"op": "set_timer", "name": "x", "after_ms": 2500})),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
    }

    // ---- callbacks whose delivery is under way during the failover (the receiver
    // refuses them until the victim's partitions are owned again)
    let hook = format!("{}/hooks/cluster", receiver.url);
    let mut callbacks = Vec::new();
    for i in 0..12 {
        let base = &nodes[i % 3].base;
        let (s, v) = send(
            &agent,
            "POST",
            &format!("{base}/v1/actors/probe/hook{i}"),
            &key,
            &[("prefer", "respond-async"), ("callback-url", &hook)],
            Some(&json!({"op": "echo", "value": i})),
        )
        .unwrap();
        assert_eq!(s, 202, "{v}");
        callbacks.push(v["request_id"].as_str().unwrap().to_owned());
    }
    // A request is answered through any node, whichever accepted it and runs its actor.
    for (i, id) in callbacks.iter().enumerate() {
        let base = &nodes[(i + 1) % 3].base;
        let (s, v) = send(
            &agent,
            "GET",
            &format!("{base}/v1/requests/{id}"),
            &key,
            &[("prefer", "wait=5")],
            None,
        )
        .unwrap();
        assert_eq!((s, &v["status"]), (200, &json!("completed")), "{v}");
        assert_eq!(v["reply"], json!(i), "{v}");
    }

    // ---- kill -9 the node owning most partitions: the others claim them within the
    // lease + 3 s, and its actors answer again
    let (per, _) = owners(&cluster(&agent, &nodes[0].base));
    let victim = per
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, _)| id.clone())
        .unwrap();
    let victim_hooks = {
        let view = cluster(&agent, &nodes[0].base);
        (0..12)
            .filter(|i| owner_of(&view, "probe", &format!("hook{i}")) == victim)
            .count()
    };
    assert!(
        victim_hooks > 0,
        "some callbacks are the victim's to deliver"
    );
    let v = nodes.iter().position(|n| n.id == victim).unwrap();
    let victim_actors: Vec<String> = {
        let view = cluster(&agent, &nodes[0].base);
        (0..ACTORS)
            .map(|k| format!("c{k}"))
            .filter(|k| owner_of(&view, "counter", k) == victim)
            .collect()
    };
    bases.lock().unwrap().retain(|b| *b != nodes[v].base);
    let killed = Instant::now();
    nodes[v].process.kill_now();
    let survivor = nodes[(v + 1) % 3].base.clone();
    wait_for(
        "the victim's partitions claimed",
        LEASE + Duration::from_secs(3),
        || {
            let (per, all) = owners(&cluster(&agent, &survivor));
            all && !per.contains_key(&victim) && per.len() == 2
        },
    );
    let reowned = killed.elapsed();
    println!("cluster: {victim} killed; all its partitions owned again after {reowned:?}");
    for actor in &victim_actors {
        let t0 = Instant::now();
        loop {
            if let Ok((200, _)) = send(
                &agent,
                "POST",
                &format!("{survivor}/v1/actors/counter/{actor}"),
                &key,
                &[],
                Some(&json!({"add": 0})),
            ) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{actor} never answered again"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "cluster: {actor} (was on {victim}) acknowledges again {:?} after the kill",
            killed.elapsed()
        );
    }
    accepting.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));

    // ---- a node told to stop hands its partitions over at once
    let leaver = (v + 2) % 3;
    bases.lock().unwrap().retain(|b| *b != nodes[leaver].base);
    let stopped = Instant::now();
    let stayer = nodes[(v + 1) % 3].base.clone();
    let left_id = nodes[leaver].id.clone();
    let pid = nodes[leaver].process.pid().expect("running");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    // Handed over in under a second (the survivor claims at its next round, a tenth of
    // the lease), while the leaver is still draining its HTTP server.
    wait_for(
        "the leaver's partitions claimed",
        Duration::from_secs(1),
        || {
            let (per, all) = owners(&cluster(&agent, &stayer));
            all && per.len() == 1 && !per.contains_key(&left_id)
        },
    );
    let handed = stopped.elapsed();
    let stop_result = nodes[leaver].process.stop(Duration::from_secs(30));
    assert!(
        stop_result.exit.is_some_and(|s| s.success()),
        "clean exit on SIGTERM"
    );
    println!(
        "cluster: {left_id} told to stop: its partitions owned again {handed:?} after SIGTERM (exit after {:?})",
        stopped.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    clients.finish();

    // ---- every timer fired once, never early, wherever its actor ended up
    let stayer_base = stayer.clone();
    wait_for("every timer fired", Duration::from_secs(10), || {
        (0..12).all(|i| {
            let got = send(
                &agent,
                "POST",
                &format!("{stayer_base}/v1/actors/probe/timer{i}"),
                &key,
                &[],
                Some(&json!({"op": "get"})),
            );
            matches!(got, Ok((200, v)) if v["fired"].as_array().is_some_and(|f| !f.is_empty()))
        })
    });
    for i in 0..12 {
        let (_, v) = send(
            &agent,
            "POST",
            &format!("{stayer}/v1/actors/probe/timer{i}"),
            &key,
            &[],
            Some(&json!({"op": "get"})),
        )
        .unwrap();
        assert_eq!(v["fired_count"]["x"], 1, "timer{i} fired once: {v}");
        let f = &v["fired"][0];
        assert!(
            f["at_ms"].as_u64() >= f["due_ms"].as_u64(),
            "timer{i} never early: {f}"
        );
    }

    // ---- every callback arrived at least once; a request's deliveries carry one
    // webhook-id
    wait_for("every callback accepted", Duration::from_secs(20), || {
        let a = accepted.lock().unwrap();
        callbacks.iter().all(|id| a.contains_key(id))
    });
    let got = receiver.received();
    let mut ids: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in &got {
        let id = r.json()["request_id"].as_str().unwrap().to_owned();
        ids.entry(id)
            .or_default()
            .insert(r.header("webhook-id").unwrap().to_owned());
    }
    for id in &callbacks {
        assert_eq!(ids[id].len(), 1, "{id}: one webhook-id over every delivery");
    }
    let twice = accepted
        .lock()
        .unwrap()
        .values()
        .filter(|n| **n > 1)
        .count();
    println!(
        "cluster: 12 callbacks ({victim_hooks} the victim's) accepted, {} deliveries, {twice} accepted more than once, one webhook-id each",
        got.len()
    );

    // ---- every acknowledged increment counted exactly once
    let total = exactly_once(&agent, &stayer, &key, &acked.lock().unwrap());
    println!(
        "cluster: {total} acknowledged increments over {ACTORS} actors, 0 lost, 0 applied twice; {} retries",
        retries.load(Ordering::Relaxed)
    );
}

/// Every counter's total is the increments acknowledged for it: none lost, none twice.
fn exactly_once(agent: &ureq::Agent, base: &str, key: &str, acked: &Acks) -> i64 {
    let total = acked.total();
    assert!(total > 100, "load ran: {total} increments");
    for k in 0..ACTORS {
        let actor = format!("c{k}");
        let (s, v) = send(
            agent,
            "POST",
            &format!("{base}/v1/actors/counter/{actor}"),
            key,
            &[],
            Some(&json!({"add": 0})),
        )
        .unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["total"].as_i64(),
            Some(*acked.count.get(&actor).unwrap_or(&0)),
            "{actor}: the total is every acknowledged increment, once"
        );
    }
    total
}

/// A private PostgreSQL server this test may restart (`scripts/pg.sh`); stopped when
/// dropped.
struct PrivatePg {
    dir: tempfile::TempDir,
    url: String,
}

impl PrivatePg {
    fn script() -> PathBuf {
        crate::harness::workspace_root().join("scripts/pg.sh")
    }

    fn start() -> PrivatePg {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(Self::script())
            .arg("start")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .output()
            .expect("scripts/pg.sh start");
        assert!(out.status.success(), "scripts/pg.sh start failed");
        let url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_owned();
        PrivatePg { dir, url }
    }

    /// Stop the server (fast: sessions are ended), stay down `down`, start it again on
    /// the same port.
    fn restart(&self, down: Duration) {
        let status = std::process::Command::new(Self::script())
            .arg("restart")
            .arg(self.dir.path())
            .arg(format!("{:.1}", down.as_secs_f64()))
            .stderr(std::process::Stdio::null())
            .status()
            .expect("scripts/pg.sh restart");
        assert!(status.success(), "scripts/pg.sh restart failed");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn signal(node: &Node, sig: &str) {
    let pid = node.process.pid().expect("running");
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Each node answers a call for an actor again (through itself, forwarded or not).
fn answering(agent: &ureq::Agent, nodes: &[&Node], key: &str) -> bool {
    nodes.iter().all(|n| {
        matches!(
            send(
                agent,
                "POST",
                &format!("{}/v1/actors/counter/c0", n.base),
                key,
                &[],
                Some(&json!({"add": 0}))
            ),
            Ok((200, _))
        )
    })
}

/// One increment of `actor` (Idempotency-Key `idem`) sent first through `first` (which
/// may not answer: 1 s), then retried through `bases` until acknowledged. Whether
/// `first` acknowledged it.
fn increment(
    first: &str,
    actor: &str,
    idem: &str,
    bases: Arc<Mutex<Vec<String>>>,
    key: &str,
    acked: Arc<Mutex<Acks>>,
    retries: Arc<AtomicU64>,
) -> bool {
    let quick = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .new_agent();
    let body = json!({"add": 1});
    let url = |base: &str| format!("{base}/v1/actors/counter/{actor}");
    let headers = [("idempotency-key", idem)];
    if let Ok((200, v)) = send(&quick, "POST", &url(first), key, &headers, Some(&body))
        && v["total"].is_i64()
    {
        acked.lock().unwrap().ack(actor);
        return true;
    }
    let agent = agent();
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        retries.fetch_add(1, Ordering::Relaxed);
        let base = {
            let b = bases.lock().unwrap();
            b[n % b.len()].clone()
        };
        match send(&agent, "POST", &url(&base), key, &headers, Some(&body)) {
            Ok((200, v)) if v["total"].is_i64() => {
                acked.lock().unwrap().ack(actor);
                return false;
            }
            Ok((s, v)) if ![503, 421, 502, 202].contains(&s) => panic!("{idem}: {s} {v}"),
            _ => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "increment {idem} never acknowledged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn noisy_cluster_pause_database_restart_join_and_leave_lose_nothing() {
    if test_postgres().is_none() {
        eprintln!("cluster: runs on the PostgreSQL pass (DWELL_TEST_POSTGRES)");
        return;
    }
    // A server of its own: this test restarts it.
    let pg = PrivatePg::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = dwell_testkit::database_url(&pg.url, "dwell_", &tmp.path().join("c")).unwrap();
    let agent = agent();
    let mut nodes = vec![start(&tmp.path().join("n1"), &store, "n1", true, &[])];
    let key = std::fs::read_to_string(tmp.path().join("n1/default-tenant.key"))
        .unwrap()
        .trim()
        .to_owned();
    nodes.push(start(&tmp.path().join("n2"), &store, "n2", false, &[]));
    nodes.push(start(&tmp.path().join("n3"), &store, "n3", false, &[]));
    wait_for("a fair share each", Duration::from_secs(10), || {
        let (per, all) = owners(&cluster(&agent, &nodes[0].base));
        all && per.len() == 3
    });
    for k in 0..ACTORS {
        wait_for("the counter callable", Duration::from_secs(5), || {
            matches!(
                send(
                    &agent,
                    "POST",
                    &format!("{}/v1/actors/counter/c{k}", nodes[k % 3].base),
                    &key,
                    &[],
                    Some(&json!({"add": 0}))
                ),
                Ok((200, _))
            )
        });
    }

    let bases = Arc::new(Mutex::new(
        nodes.iter().map(|n| n.base.clone()).collect::<Vec<_>>(),
    ));
    let clients = Clients::start(&bases, &key);
    let (acked, retries) = (clients.acked.clone(), clients.retries.clone());
    std::thread::sleep(Duration::from_secs(2));

    // ---- SIGSTOP a node past its lease, then SIGCONT: the others take its partitions;
    // the commits it had under way when it woke are refused by the fence, and none of
    // them landed (the totals at the end). A pause that caught it idle proves nothing,
    // so it is paused again, up to three times, until one caught it at work.
    let fenced_of = |n: &Node| cluster(&agent, &n.base)["fenced_commits"].as_u64().unwrap();
    let mut refused = 0;
    let mut pauses = 0;
    while refused == 0 && pauses < 3 {
        pauses += 1;
        let (per, _) = owners(&cluster(&agent, &nodes[0].base));
        let z = nodes
            .iter()
            .position(|n| n.id == *per.iter().max_by_key(|(_, n)| **n).unwrap().0)
            .unwrap();
        let before = fenced_of(&nodes[z]);
        bases.lock().unwrap().retain(|b| *b != nodes[z].base);
        // A burst of increments through the node about to pause, so it has commits
        // under way; each is retried through the others until acknowledged.
        let view = cluster(&agent, &nodes[0].base);
        let theirs: Vec<String> = (0..ACTORS)
            .map(|k| format!("c{k}"))
            .filter(|k| owner_of(&view, "counter", k) == nodes[z].id)
            .collect();
        assert!(!theirs.is_empty(), "{} runs some counters", nodes[z].id);
        let burst: Vec<_> = (0..12)
            .map(|i| {
                let (b, k, a, r) = (bases.clone(), key.clone(), acked.clone(), retries.clone());
                let first = nodes[z].base.clone();
                let actor = theirs[i % theirs.len()].clone();
                std::thread::spawn(move || {
                    // Through it until it stops answering (then through the others).
                    for j in 0.. {
                        let idem = format!("burst{pauses}-{i}-{j}");
                        let (b, a, r) = (b.clone(), a.clone(), r.clone());
                        if !increment(&first, &actor, &idem, b, &k, a, r) {
                            break;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        signal(&nodes[z], "-STOP");
        let paused = Instant::now();
        let other = nodes[(z + 1) % 3].base.clone();
        let zid = nodes[z].id.clone();
        wait_for(
            "the paused node's partitions claimed",
            LEASE + Duration::from_secs(3),
            || {
                let (per, all) = owners(&cluster(&agent, &other));
                all && !per.contains_key(&zid)
            },
        );
        let taken = paused.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        signal(&nodes[z], "-CONT");
        // Awake, it renews its lease and takes a share again.
        wait_for("the paused node back", Duration::from_secs(10), || {
            let (per, all) = owners(&cluster(&agent, &other));
            all && per.contains_key(&zid) && per.len() == 3
        });
        for b in burst {
            b.join().expect("a burst increment failed");
        }
        refused = fenced_of(&nodes[z]) - before;
        println!(
            "cluster: {zid} paused (SIGSTOP) {:?}; its partitions taken after {taken:?}; after SIGCONT the fence refused {refused} of its commits",
            paused.elapsed()
        );
        bases.lock().unwrap().push(nodes[z].base.clone());
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        refused > 0,
        "a node paused under load has commits under way that the fence refuses"
    );
    // The same, as metrics: each node's fenced commits (the paused one's above zero),
    // and the partitions held adding up to all of them.
    let metric = |n: &Node, name: &str| -> f64 {
        let req = ureq::http::Request::builder()
            .uri(format!("{}/metrics", n.base))
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Vec::new())
            .unwrap();
        let text = agent
            .run(req)
            .expect("GET /metrics")
            .body_mut()
            .read_to_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let fenced: f64 = nodes
        .iter()
        .map(|n| metric(n, "dwell_cluster_fenced_commits_total"))
        .sum();
    assert!(fenced >= 1.0, "fenced commits counted: {fenced}");
    wait_for("the partitions held add up", Duration::from_secs(5), || {
        nodes
            .iter()
            .map(|n| metric(n, "dwell_cluster_partitions_held"))
            .sum::<f64>()
            == f64::from(PARTITIONS)
            && nodes
                .iter()
                .all(|n| metric(n, "dwell_cluster_serving") == 1.0)
    });

    // ---- PostgreSQL restarted under load: the nodes recover by themselves
    let down = Instant::now();
    pg.restart(Duration::from_secs(1));
    let restarted = down.elapsed();
    let all: Vec<&Node> = nodes.iter().collect();
    let back = wait_for(
        "every node answering after the restart",
        Duration::from_secs(20),
        || answering(&agent, &all, &key),
    );
    println!(
        "cluster: PostgreSQL down and up again in {restarted:?}; every node answers {back:?} after"
    );
    std::thread::sleep(Duration::from_secs(2));

    // ---- a node joins, another leaves (SIGTERM): partitions move; the longest gap any
    // actor saw between two acknowledgements
    acked.lock().unwrap().watch();
    let joined = Instant::now();
    nodes.push(start(&tmp.path().join("n4"), &store, "n4", false, &[]));
    wait_for("a fair share of four", Duration::from_secs(10), || {
        let (per, all) = owners(&cluster(&agent, &nodes[0].base));
        all && per.len() == 4 && per.values().all(|n| *n == 8)
    });
    println!(
        "cluster: n4 joined; 8 partitions each {:?} after it started",
        joined.elapsed()
    );
    bases.lock().unwrap().push(nodes[3].base.clone());
    std::thread::sleep(Duration::from_secs(2));
    bases.lock().unwrap().retain(|b| *b != nodes[1].base);
    let left = Instant::now();
    signal(&nodes[1], "-TERM");
    wait_for("n2's partitions claimed", Duration::from_secs(2), || {
        let (per, all) = owners(&cluster(&agent, &nodes[0].base));
        all && per.len() == 3 && !per.contains_key("n2")
    });
    println!(
        "cluster: n2 left (SIGTERM); its partitions owned again {:?} after",
        left.elapsed()
    );
    assert!(
        nodes[1]
            .process
            .stop(Duration::from_secs(30))
            .exit
            .is_some_and(|s| s.success())
    );
    std::thread::sleep(Duration::from_secs(2));
    let (gap, who) = acked.lock().unwrap().longest.clone().unwrap();
    println!(
        "cluster: the longest gap an actor saw during the join and the leave: {gap:?} ({who})"
    );
    assert!(
        gap < LEASE + Duration::from_secs(3),
        "a join and a drained leave keep every actor answering: {who} waited {gap:?}"
    );

    clients.finish();
    let total = exactly_once(&agent, &nodes[0].base, &key, &acked.lock().unwrap());
    println!(
        "cluster: {total} acknowledged increments over {ACTORS} actors through a pause, a database restart, a join and a leave: 0 lost, 0 applied twice; {} retries",
        retries.load(Ordering::Relaxed)
    );

    // ---- a tenant deleted through one node is purged by every node, each its own
    // actors; upgrade runs are refused in cluster mode (not yet cluster-wide)
    let live: Vec<&Node> = [0, 2, 3].iter().map(|i| &nodes[*i]).collect();
    let (s, v) = send(
        &agent,
        "POST",
        &format!("{}/v1/tenants", live[0].base),
        ADMIN,
        &[],
        Some(&json!({"name": "leaving"})),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let (s, v) = send(
        &agent,
        "POST",
        &format!("{}/v1/tenants/leaving/keys", live[1].base),
        ADMIN,
        &[],
        Some(&json!({})),
    )
    .unwrap();
    assert_eq!(s, 201, "{v}");
    let leaving = v["key"].as_str().unwrap().to_owned();
    let wasm = std::fs::read(guest("counter")).unwrap();
    let put = ureq::http::Request::builder()
        .method("PUT")
        .uri(format!("{}/v1/modules/counter", live[0].base))
        .header("authorization", format!("Bearer {leaving}"))
        .header("content-type", "application/wasm")
        .body(wasm)
        .unwrap();
    let status = agent.run(put).map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(200 | 201)), "deploy: {status:?}");
    for i in 0..24 {
        let base = &live[i % 3].base;
        wait_for("the tenant's counter", Duration::from_secs(5), || {
            matches!(
                send(
                    &agent,
                    "POST",
                    &format!("{base}/v1/actors/counter/g{i}"),
                    &leaving,
                    &[],
                    Some(&json!({"add": 1}))
                ),
                Ok((200, _))
            )
        });
    }
    let (s, v) = send(
        &agent,
        "POST",
        &format!("{}/v1/modules/counter/upgrades", live[2].base),
        &leaving,
        &[],
        Some(&json!({"from": 1, "to": 2, "select": "all", "mode": "apply"})),
    )
    .unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cluster mode")),
        "{v}"
    );
    let (s, v) = send(
        &agent,
        "DELETE",
        &format!("{}/v1/tenants/leaving", live[1].base),
        ADMIN,
        &[],
        None,
    )
    .unwrap();
    assert!(s == 204 || s == 200, "{s} {v}");
    let took = wait_for(
        "every node purged the deleted tenant",
        Duration::from_secs(15),
        || {
            live.iter()
                .all(|n| n.process.log().contains("deleted tenant purged"))
        },
    );
    for n in &live {
        assert!(
            !n.process
                .log()
                .contains("purging a deleted tenant; retrying"),
            "{}: a purge that fails",
            n.id
        );
    }
    let (s, _) = send(
        &agent,
        "POST",
        &format!("{}/v1/actors/counter/g0", live[2].base),
        &leaving,
        &[],
        Some(&json!({"add": 1})),
    )
    .unwrap();
    assert_eq!(s, 401, "the deleted tenant's key is refused everywhere");
    println!(
        "cluster: a tenant with 24 actors over 3 nodes deleted through one; every node purged its share within {took:?}"
    );
}

//! Visibility: `/metrics` as a Prometheus scraper sees it (parsed with a Prometheus
//! text-format parser) — for the admin key on the API's listener, without a key on
//! `--metrics-listen` — moving as the test drives turns; and `--log-format json`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Resp, Server};

/// A scrape, parsed.
fn parse(body: &[u8]) -> prometheus_parse::Scrape {
    let text = String::from_utf8(body.to_vec()).expect("metrics are UTF-8");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none:
/// a series appears with its first observation).
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value as V;
    let matching = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    let mut found = None;
    for s in matching {
        let v = match &s.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => *v,
            other => panic!("{name} is not a number: {other:?}"),
        };
        assert!(
            found.is_none(),
            "{name} {labels:?} matches more than one series"
        );
        found = Some(v);
    }
    found.unwrap_or(0.0)
}

/// Observations of the histogram `name` (its `+Inf` bucket).
fn observations(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    use prometheus_parse::Value as V;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find_map(|s| match &s.value {
            V::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .map(|b| b.count),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no histogram {name}"))
}

fn scrape_as_admin(server: &Server) -> prometheus_parse::Scrape {
    let auth = format!("Bearer {}", server.admin_key);
    let r = server.request("GET", "/metrics", &[("authorization", auth.as_str())], None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content type {ct}");
    parse(&r.body)
}

#[test]
fn metrics_count_the_turns_a_test_drives_for_the_admin_key_and_on_the_metrics_listener() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    server.deploy("counter", "counter");

    // The API's listener: the admin key only.
    let no_key: Resp = server.request("GET", "/metrics", &[("authorization", "")], None);
    no_key.assert_problem(401);
    server.get("/metrics").assert_problem(403);

    let before = scrape_as_admin(&server);
    let ok = [
        ("tenant", "default"),
        ("module", "counter"),
        ("outcome", "ok"),
    ];
    let turns_before = value(&before, "dwell_turns_total", &ok);
    let commits_before = observations(&before, "dwell_commit_duration_seconds");
    let durations_before = observations(&before, "dwell_turn_duration_seconds");

    const CALLS: u32 = 7;
    for i in 1..=CALLS {
        let r = server.call("counter", "metered", json!({"add": 1}));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"total": i}));
    }

    let after = scrape_as_admin(&server);
    assert_eq!(
        value(&after, "dwell_turns_total", &ok) - turns_before,
        f64::from(CALLS),
        "one ok turn per call"
    );
    assert_eq!(
        value(&after, "dwell_turns_total", &[("outcome", "dead_letter")]),
        0.0
    );
    let commits = observations(&after, "dwell_commit_duration_seconds") - commits_before;
    assert!(
        commits >= 1.0,
        "the calls were committed: {commits} commits"
    );
    assert!(observations(&after, "dwell_backend_commit_duration_seconds") >= commits);
    assert!(observations(&after, "dwell_commit_batch_ops") >= commits);
    assert!(
        observations(&after, "dwell_turn_duration_seconds") - durations_before >= f64::from(CALLS)
    );
    // Nothing is in flight once every call has its answer.
    assert_eq!(value(&after, "dwell_ingress_in_flight_messages", &[]), 0.0);
    assert_eq!(value(&after, "dwell_instances_in_use", &[]), 0.0);

    // The metrics listener: the same text, no key needed.
    let line = server
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| l.strip_prefix("dwell metrics on ").map(str::to_owned))
        .expect("the metrics address is printed");
    let mut resp = ureq::get(&line)
        .call()
        .expect("scrape the metrics listener");
    assert_eq!(resp.status(), 200);
    let body = resp.body_mut().read_to_vec().unwrap();
    let open = parse(&body);
    assert_eq!(
        value(&open, "dwell_turns_total", &ok),
        value(&after, "dwell_turns_total", &ok)
    );
    // Only /metrics there: the API is not reachable through it.
    let other = line.replace("/metrics", "/v1/modules");
    match ureq::get(&other).call() {
        Err(ureq::Error::StatusCode(404)) => {}
        other => panic!("the metrics listener serves only /metrics: {other:?}"),
    }
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    // At debug level the server, its HTTP stack and the writer all log something.
    let server = Server::start_with_env(&["--log-format", "json"], &[("DWELL_LOG", "debug")]);
    server.deploy("counter", "counter");
    let r = server.call("counter", "logged", json!({"add": 1}));
    assert_eq!(r.status, 200);
    let lines = server.eventually(Duration::from_secs(10), "log lines", || {
        let log = server.log();
        let lines: Vec<String> = log.lines().map(str::to_owned).collect();
        (!lines.is_empty()).then_some(lines)
    });
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
}

#[test]
fn the_durable_backlog_gauges_count_pending_timers_and_undelivered_calls() {
    // Every call to this service fails, so a check-in's pass fetch stays in the outbox.
    let passes = crate::fake::FakeService::start(|_, _| crate::fake::answer(503, "down"));
    let server = Server::start(&["--allow-private-net", "--allow-http", &passes.host_port()]);
    server.deploy("checkin", "checkin");
    let before = scrape_as_admin(&server);
    assert_eq!(value(&before, "dwell_timers_pending", &[]), 0.0);
    assert_eq!(value(&before, "dwell_mailbox_messages", &[]), 0.0);
    assert_eq!(value(&before, "dwell_outbox_pending", &[]), 0.0);
    let far = 4_000_000_000_000u64; // check-in opens long after this test
    let url = format!("{}/pass", passes.url);
    let register = |booking: &str, opens_ms: u64| {
        crate::visibility::register(&server, booking, opens_ms, &url, 3_600_000)
    };
    // Three wait for check-in to open (one timer each); one fetches its pass now, from
    // a service that keeps failing: the call waits in the outbox between attempts.
    for b in ["T1", "T2", "T3"] {
        register(b, far);
    }
    register("NOW1", 1);
    let scrape = server.eventually(Duration::from_secs(10), "the backlog gauges", || {
        let s = scrape_as_admin(&server);
        (value(&s, "dwell_timers_pending", &[]) >= 3.0
            && value(&s, "dwell_outbox_pending", &[]) >= 1.0
            && value(&s, "dwell_mailbox_messages", &[]) == 0.0)
            .then_some(s)
    });
    assert_eq!(
        value(&scrape, "dwell_timers_pending", &[]),
        3.0 + timers_of(&server, "NOW1"),
        "the three open timers, and whatever the fetching check-in has set"
    );
    assert_eq!(value(&scrape, "dwell_outbox_pending", &[]), 1.0);
}

/// How many timers the actor has pending, from its API view.
fn timers_of(server: &Server, booking: &str) -> f64 {
    let v = server.actor("checkin", booking).json();
    v["timers"].as_array().map_or(0, Vec::len) as f64
}

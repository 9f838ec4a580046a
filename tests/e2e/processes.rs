//! Long-running process capabilities: durable timers, outbound HTTP from the outbox,
//! signed callbacks, idempotency keys, actor-to-actor asks and completion — driven
//! through the `probe` example module.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake::{FakeService, answer};
use crate::harness::Server;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn probe(server: &Server, key: &str, op: Value) -> Value {
    let r = server.call("probe", key, op);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn state(server: &Server, key: &str) -> Value {
    server.actor("probe", key).json()["state"].clone()
}

#[test]
fn a_timer_fires_once_never_early_and_cancelled_or_replaced_timers_do_not_fire() {
    let server = Server::start(&[]);
    server.deploy("probe", "probe");
    let before = now_ms();
    probe(
        &server,
        "t",
        json!({"op": "set_timer", "name": "soon", "after_ms": 300}),
    );
    probe(
        &server,
        "t",
        json!({"op": "set_timer", "name": "cancelled", "after_ms": 300}),
    );
    probe(
        &server,
        "t",
        json!({"op": "set_timer", "name": "replaced", "after_ms": 200}),
    );
    probe(
        &server,
        "t",
        json!({"op": "set_timer", "name": "replaced", "after_ms": 700}),
    );
    probe(
        &server,
        "t",
        json!({"op": "cancel_timer", "name": "cancelled"}),
    );

    let pending = server.actor("probe", "t").json()["timers"].clone();
    let mut names: Vec<_> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["replaced", "soon"],
        "inspection lists pending timers"
    );

    server.eventually(Duration::from_secs(10), "both timers to fire", || {
        (state(&server, "t")["fired"].as_array()?.len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500)); // room for a wrong extra firing
    let s = state(&server, "t");
    assert_eq!(s["fired_count"], json!({"soon": 1, "replaced": 1}), "{s}");
    for f in s["fired"].as_array().unwrap() {
        let (at, due) = (f["at_ms"].as_u64().unwrap(), f["due_ms"].as_u64().unwrap());
        assert!(at >= due, "a timer fired early: {f}");
    }
    let soon = &s["fired"][0];
    assert_eq!(soon["name"], "soon");
    assert!(soon["due_ms"].as_u64().unwrap() >= before + 300);
    let replaced = &s["fired"][1];
    assert!(
        replaced["due_ms"].as_u64().unwrap() >= before + 700,
        "the replacement's due time counts"
    );
    assert_eq!(server.actor("probe", "t").json()["timers"], json!([]));
}

#[test]
fn a_timer_due_while_the_server_is_down_fires_after_restart() {
    let mut server = Server::start(&[]);
    server.deploy("probe", "probe");
    probe(
        &server,
        "sleeper",
        json!({"op": "set_timer", "name": "wake", "after_ms": 400}),
    );
    server.kill();
    std::thread::sleep(Duration::from_millis(800));
    server.restart();
    server.eventually(
        Duration::from_secs(10),
        "the timer to fire after restart",
        || (state(&server, "sleeper")["fired_count"]["wake"] == 1).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let s = state(&server, "sleeper");
    assert_eq!(s["fired"].as_array().unwrap().len(), 1);
    assert!(s["fired"][0]["at_ms"].as_u64() >= s["fired"][0]["due_ms"].as_u64());
}

#[test]
fn ten_thousand_timers_across_a_thousand_actors_fire_exactly_once() {
    let server = Server::start(&[]);
    server.deploy("probe", "probe");
    std::thread::scope(|s| {
        for t in 0..8 {
            let server = &server;
            s.spawn(move || {
                for a in (t..1000).step_by(8) {
                    let r = server.event(
                        "probe",
                        &format!("p{a}"),
                        json!({"op": "set_timers", "count": 10, "after_ms": 1500}),
                    );
                    assert_eq!(r.status, 202);
                }
            });
        }
    });
    let started = Instant::now();
    for a in 0..1000 {
        let key = format!("p{a}");
        server.eventually(Duration::from_secs(60), "every timer to fire", || {
            let s = state(&server, &key);
            (s["fired"].as_array().map_or(0, |f| f.len()) >= 10).then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut total = 0;
    for a in 0..1000 {
        let s = state(&server, &format!("p{a}"));
        let counts = s["fired_count"].as_object().unwrap();
        assert_eq!(counts.len(), 10, "p{a}: {s}");
        assert!(
            counts.values().all(|c| c == 1),
            "p{a} fired a timer twice: {s}"
        );
        total += counts.len();
    }
    assert_eq!(total, 10_000);
    eprintln!("10,000 timers fired and checked in {:?}", started.elapsed());
}

#[test]
fn outbound_http_is_retried_with_one_idempotency_key_and_refused_off_the_allowlist() {
    let service = FakeService::start(|_, i| {
        if i < 2 {
            answer(500, r#"{"error":"try later"}"#)
        } else {
            answer(200, r#"{"pass":"BP-1"}"#)
        }
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &service.host_port()]);
    server.deploy("probe", "probe");
    let r = probe(
        &server,
        "caller",
        json!({"op": "http", "call_id": "c1", "url": format!("{}/passes", service.url), "body": {"booking": "6YZJWW"}}),
    );
    assert_eq!(r, json!({"ok": true}));
    server.eventually(Duration::from_secs(20), "the HTTP result", || {
        let s = state(&server, "caller");
        (s["http"].as_array()?.len() == 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let s = state(&server, "caller");
    assert_eq!(
        s["http"].as_array().unwrap().len(),
        1,
        "the success arrives once"
    );
    assert_eq!(s["http"][0]["status"], 200);
    assert_eq!(s["http"][0]["body"], r#"{"pass":"BP-1"}"#);
    let got = service.received();
    assert_eq!(got.len(), 3, "failed twice, then succeeded");
    let keys: Vec<_> = got
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert!(keys[0].is_some());
    assert!(
        keys.iter().all(|k| k == &keys[0]),
        "one key for every attempt: {keys:?}"
    );
    assert_eq!(got[0].json(), json!({"booking": "6YZJWW"}));
    assert_eq!(
        server.actor("probe", "caller").json()["outbound_calls"],
        json!([])
    );

    // Not on the allowlist: the turn sees a clear error, nothing is sent.
    let r = probe(
        &server,
        "caller",
        json!({"op": "http", "call_id": "c2", "url": "http://127.0.0.1:1/steal"}),
    );
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("allowlist"), "{err}");
    let r = probe(
        &server,
        "caller",
        json!({"op": "http", "call_id": "c3", "url": "http://169.254.169.254/latest/meta-data"}),
    );
    assert!(r["error"].as_str().unwrap().contains("allowlist"));
}

pub(crate) fn verify_signature(req: &crate::fake::Received, secret: &str) -> bool {
    let id = req.header("webhook-id").unwrap();
    let ts = req.header("webhook-timestamp").unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&req.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    req.header("webhook-signature")
        .unwrap()
        .split(' ')
        .any(|s| s == format!("v1,{expected}"))
}

#[test]
fn a_callback_is_signed_retried_until_accepted_and_survives_sigkill() {
    let receiver = FakeService::start(|_, i| {
        if i < 2 {
            answer(500, "{}")
        } else {
            answer(200, "{}")
        }
    });
    // A second receiver that is down until we say so.
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let late = FakeService::start(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            answer(204, "")
        } else {
            answer(503, "{}")
        }
    });
    let allow = format!("{},{}", receiver.host_port(), late.host_port());
    let mut server = Server::start(&[
        "--allow-private-net",
        "--allow-http",
        &allow,
        "--webhook-secret",
        SECRET,
    ]);
    server.deploy("probe", "probe");
    let cb = format!("{}/hooks/dwell", receiver.url);
    let r = server.post_json(
        "/v1/actors/probe/cb",
        &json!({"op": "echo", "value": {"pass": "BP-9"}}),
        &[("prefer", "respond-async"), ("callback-url", &cb)],
    );
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap();
    let request_id = r.json()["request_id"].as_str().unwrap().to_owned();
    server.eventually(
        Duration::from_secs(20),
        "the callback to be accepted",
        || (receiver.count() >= 3).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = receiver.received();
    assert_eq!(got.len(), 3, "500, 500, then one accepted delivery");
    for g in &got {
        assert_eq!(g.path, "/hooks/dwell");
        assert!(
            verify_signature(g, SECRET),
            "signature verifies with the secret"
        );
        assert!(!verify_signature(
            g,
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        ));
        assert_eq!(
            g.header("webhook-id"),
            got[0].header("webhook-id"),
            "stable id"
        );
    }
    let body = got[2].json();
    assert_eq!(body["request_id"], request_id.as_str());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["reply"], json!({"pass": "BP-9"}));
    let rec = server.get(&location).json();
    assert_eq!(rec["callback"]["status"], "delivered");
    assert_eq!(rec["callback"]["attempts"], 3);

    // A crash between the commit and the delivery still delivers after restart.
    let r = server.post_json(
        "/v1/actors/probe/crash",
        &json!({"op": "echo", "value": 42}),
        &[
            ("prefer", "respond-async"),
            ("callback-url", &format!("{}/cb", late.url)),
        ],
    );
    assert_eq!(r.status, 202);
    server.eventually(Duration::from_secs(10), "a failed first delivery", || {
        (late.count() >= 1).then_some(())
    });
    server.kill();
    up.store(true, Ordering::SeqCst);
    let before = late.count();
    server.restart();
    server.eventually(Duration::from_secs(20), "delivery after restart", || {
        (late.count() > before).then_some(())
    });
    let after: Vec<_> = late.received().into_iter().skip(before).collect();
    assert!(verify_signature(&after[0], SECRET));
    assert_eq!(after[0].json()["reply"], 42);
    assert_eq!(after[0].json()["status"], "completed");
}

#[test]
fn an_idempotency_key_returns_the_first_request_and_enqueues_once() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    let h = [("idempotency-key", "order-77")];
    let a = server.post_json("/v1/actors/counter/idem", &json!({"add": 5}), &h);
    let b = server.post_json("/v1/actors/counter/idem", &json!({"add": 5}), &h);
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.json(), json!({"total": 5}));
    assert_eq!(b.json(), json!({"total": 5}), "the same result");
    assert_eq!(
        a.header("dwell-request-id"),
        b.header("dwell-request-id"),
        "the same request"
    );
    let actor = server.actor("counter", "idem").json();
    assert_eq!(actor["turns"], 1, "one message in the actor");
    assert_eq!(actor["state"], json!({"total": 5}));

    // Events too.
    let e = [("idempotency-key", "evt-1")];
    let first = server.post_json("/v1/actors/counter/idem/events", &json!({"add": 10}), &e);
    let again = server.post_json("/v1/actors/counter/idem/events", &json!({"add": 10}), &e);
    assert_eq!(first.json()["duplicate"], false);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(first.json()["seq"], again.json()["seq"]);
    server.eventually(Duration::from_secs(5), "the event to apply", || {
        let a = server.actor("counter", "idem").json();
        (a["mailbox_depth"] == 0 && a["turns"] == 2).then_some(())
    });
    assert_eq!(
        server.actor("counter", "idem").json()["state"],
        json!({"total": 15})
    );

    // The same key for another actor is a conflict, not a silent replay.
    let p = server
        .post_json("/v1/actors/counter/other/events", &json!({"add": 1}), &e)
        .assert_problem(422);
    assert!(p["detail"].as_str().unwrap().contains("Idempotency-Key"));
}

#[test]
fn actors_ask_each_other_and_a_completed_process_refuses_more_messages() {
    let server = Server::start(&[]);
    server.deploy("probe", "probe");
    probe(
        &server,
        "asker",
        json!({"op": "ask", "module": "probe", "key": "answerer", "body": {"op": "echo", "value": "pong"}, "correlation": "q1"}),
    );
    server.eventually(Duration::from_secs(10), "the ask reply", || {
        (state(&server, "asker")["asks"].as_array()?.len() == 1).then_some(())
    });
    let asks = state(&server, "asker")["asks"].clone();
    assert_eq!(
        asks,
        json!([{"correlation": "q1", "reply": "pong", "error": null}])
    );
    // Asking an unknown module is refused in the turn.
    let r = probe(
        &server,
        "asker",
        json!({"op": "ask", "module": "nope", "key": "x", "body": 1, "correlation": "q2"}),
    );
    assert!(r["error"].as_str().unwrap().contains("no module"));

    probe(
        &server,
        "done",
        json!({"op": "set_timer", "name": "never", "after_ms": 200}),
    );
    probe(&server, "done", json!({"op": "complete"}));
    let p = server
        .call("probe", "done", json!({"op": "get"}))
        .assert_problem(409);
    assert!(p["detail"].as_str().unwrap().contains("complete"));
    server
        .event("probe", "done", json!({"op": "get"}))
        .assert_problem(409);
    let a = server.actor("probe", "done").json();
    assert_eq!(a["status"], "completed");
    assert!(a["state"].is_object(), "state stays inspectable");
    assert_eq!(
        a["timers"],
        json!([]),
        "a completed process keeps no timers"
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(state(&server, "done")["fired"], json!([]));
}

#[test]
fn a_timer_the_guest_was_told_it_has_is_stored_and_the_limit_is_decided_in_the_turn() {
    let server = Server::start(&["--max-timers", "10"]);
    server.deploy("probe", "probe");
    let ok = json!({"ok": true});
    assert_eq!(
        probe(
            &server,
            "lim",
            json!({"op": "set_timers", "count": 10, "after_ms": 600_000})
        ),
        ok
    );
    // Cancelling a timer that does not exist frees nothing: an 11th is refused in the
    // turn that asks for it (it used to be accepted, then dropped by the store).
    assert_eq!(
        probe(
            &server,
            "lim",
            json!({"op": "cancel_timer", "name": "nope"})
        ),
        ok
    );
    let r = probe(
        &server,
        "lim",
        json!({"op": "set_timer", "name": "extra", "after_ms": 600_000}),
    );
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("at most 10")),
        "{r}"
    );
    // Replacing a pending timer at the limit is fine; cancelling a real one makes room.
    assert_eq!(
        probe(
            &server,
            "lim",
            json!({"op": "set_timer", "name": "t3", "after_ms": 700_000})
        ),
        ok
    );
    assert_eq!(
        probe(&server, "lim", json!({"op": "cancel_timer", "name": "t0"})),
        ok
    );
    assert_eq!(
        probe(
            &server,
            "lim",
            json!({"op": "set_timer", "name": "extra", "after_ms": 600_000})
        ),
        ok
    );
    // Interleaved from many clients near the limit (8 pending, 4 clients each replacing
    // their own): every timer a turn was told it has is stored, and never more than 10.
    for name in ["t9", "extra"] {
        assert_eq!(
            probe(&server, "lim", json!({"op": "cancel_timer", "name": name})),
            ok
        );
    }
    let accepted = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for c in 0..4 {
            let (server, accepted) = (&server, &accepted);
            s.spawn(move || {
                for i in 0..15 {
                    if i > 0 {
                        let previous = format!("c{c}x{}", i - 1);
                        let r = server.call(
                            "probe",
                            "lim",
                            json!({"op": "cancel_timer", "name": previous}),
                        );
                        assert_eq!(r.status, 200);
                    }
                    let name = format!("c{c}x{i}");
                    let r = server.call(
                        "probe",
                        "lim",
                        json!({"op": "set_timer", "name": name, "after_ms": 600_000}),
                    );
                    if r.json() == json!({"ok": true}) {
                        accepted.lock().unwrap().push(name);
                    }
                }
            });
        }
    });
    let a = server.actor("probe", "lim").json();
    let mut pending: Vec<String> = a["timers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    pending.sort();
    let accepted = accepted.into_inner().unwrap();
    assert!(!accepted.is_empty(), "some clients got a slot");
    // What must be pending: the 8 base timers and each client's last timer if accepted
    // (every earlier one was cancelled by that client's next step).
    let mut expected: Vec<String> = (1..=8).map(|i| format!("t{i}")).collect();
    expected.extend(accepted.iter().filter(|n| n.ends_with("x14")).cloned());
    expected.sort();
    assert_eq!(pending, expected, "accepted: {accepted:?}");
    assert!(pending.len() <= 10);
}

#[test]
fn an_ask_to_a_completed_process_is_answered_with_an_error() {
    let server = Server::start(&[]);
    server.deploy("probe", "probe");
    probe(&server, "finished", json!({"op": "complete"}));
    let r = probe(
        &server,
        "curious",
        json!({"op": "ask", "module": "probe", "key": "finished", "body": {"op": "get"}, "correlation": "late"}),
    );
    assert_eq!(r, json!({"ok": true}));
    let asks = server.eventually(Duration::from_secs(10), "the ask's answer", || {
        let asks = state(&server, "curious")["asks"].clone();
        (asks.as_array()?.len() == 1).then_some(asks)
    });
    assert_eq!(asks[0]["correlation"], "late");
    assert_eq!(asks[0]["reply"], Value::Null);
    let error = asks[0]["error"].as_str().unwrap();
    assert!(
        error.contains("probe/finished") && error.contains("complete"),
        "{error}"
    );
}

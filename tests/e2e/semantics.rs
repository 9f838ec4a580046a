//! HTTP details a client relies on: RFC 7240 `Prefer` with `Preference-Applied`,
//! `Idempotency-Key` fingerprints, bodies the process cannot decode, readiness, and a
//! process's typed refusals (409/412/422) as problem+json — traps stay 500.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::fake::{FakeService, answer};
use crate::harness::Server;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn call_with(
    server: &Server,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u128, crate::harness::Resp) {
    let started = Instant::now();
    let r = server.post_json(path, body, headers);
    (started.elapsed().as_millis(), r)
}

#[test]
fn prefer_is_parsed_per_rfc_7240_and_what_was_applied_is_said() {
    let server = Server::start(&[]);
    server.deploy("checkin", "checkin");
    server.deploy("counter", "counter");
    // A check-in without a pass waits: `Wait=1` (any case, spaces, other preferences
    // around it) is honoured, not the 5 s default.
    for prefer in [
        "Wait=1",
        "WAIT = 1",
        "handling=lenient; x=\"a,b\", wait=1;p=q",
    ] {
        let (ms, r) = call_with(
            &server,
            "/v1/actors/checkin/PREF1",
            &json!({"type": "check_in"}),
            &[("prefer", prefer)],
        );
        assert_eq!(r.status, 202, "{prefer}");
        assert!(
            (900..3000).contains(&ms),
            "{prefer}: answered after {ms} ms"
        );
        assert_eq!(r.header("preference-applied").as_deref(), Some("wait=1"));
        assert!(r.header("location").unwrap().starts_with("/v1/requests/"));
    }
    // respond-async answers at once and says so.
    let (ms, r) = call_with(
        &server,
        "/v1/actors/checkin/PREF1",
        &json!({"type": "check_in"}),
        &[("prefer", "Respond-Async")],
    );
    assert_eq!(r.status, 202);
    assert!(ms < 900, "{ms} ms");
    assert_eq!(
        r.header("preference-applied").as_deref(),
        Some("respond-async")
    );
    // A quick reply within the wait is 200, with the wait applied.
    let r = server.post_json(
        "/v1/actors/counter/p",
        &json!({"add": 1}),
        &[("prefer", "wait=3")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("preference-applied").as_deref(), Some("wait=3"));
    // No preference, no Preference-Applied.
    let r = server.call("counter", "p", json!({"add": 1}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("preference-applied"), None);
    // The long poll of a request honours it too.
    let loc = r.header("dwell-request-id").unwrap();
    let r = server.request(
        "GET",
        &format!("/v1/requests/{loc}"),
        &[("prefer", "wait=2")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("preference-applied").as_deref(), Some("wait=2"));
    // A wait that is not a number is a client error, not a silent default.
    let p = server
        .post_json(
            "/v1/actors/counter/p",
            &json!({"add": 1}),
            &[("prefer", "wait=soon")],
        )
        .assert_problem(400);
    assert!(p["detail"].as_str().unwrap().contains("wait=soon"));
}

#[test]
fn an_idempotency_key_reused_with_another_body_is_a_422_and_changes_nothing() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    let key = [("idempotency-key", "order-7")];
    let first = server.post_json("/v1/actors/counter/idem", &json!({"add": 5}), &key);
    assert_eq!(first.status, 200);
    assert_eq!(first.json(), json!({"total": 5}));
    // The same request again: the first result, nothing applied twice.
    let again = server.post_json("/v1/actors/counter/idem", &json!({"add": 5}), &key);
    assert_eq!(again.json(), json!({"total": 5}));
    assert_eq!(
        again.header("dwell-request-id"),
        first.header("dwell-request-id")
    );
    // Another body with the same key: refused, nothing enqueued.
    let p = server
        .post_json("/v1/actors/counter/idem", &json!({"add": 6}), &key)
        .assert_problem(422);
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-conflict")
    );
    // Another actor with the same key, and an event with it: refused as well.
    server
        .post_json("/v1/actors/counter/other", &json!({"add": 5}), &key)
        .assert_problem(422);
    server
        .post_json("/v1/actors/counter/idem/events", &json!({"add": 5}), &key)
        .assert_problem(422);
    // Events follow the same rule.
    let ekey = [("idempotency-key", "event-1")];
    let e1 = server.post_json("/v1/actors/counter/idem/events", &json!({"add": 1}), &ekey);
    assert_eq!(e1.json()["duplicate"], false);
    let e2 = server.post_json("/v1/actors/counter/idem/events", &json!({"add": 1}), &ekey);
    assert_eq!(e2.json()["duplicate"], true);
    server
        .post_json("/v1/actors/counter/idem/events", &json!({"add": 2}), &ekey)
        .assert_problem(422);
    let r = server.call("counter", "idem", json!({"add": 0}));
    assert_eq!(
        r.json(),
        json!({"total": 6}),
        "5 once, then the event's 1 once"
    );
}

#[test]
fn a_body_the_process_cannot_decode_is_a_422_naming_the_field() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    let p = server
        .call("counter", "d", json!({"add": "x"}))
        .assert_problem(422);
    assert!(p["detail"].as_str().unwrap().contains("invalid"), "{p}");
    assert!(p["request_id"].is_string(), "{p}");
    // Not JSON at all is a 400 before it reaches the process.
    server
        .request(
            "POST",
            "/v1/actors/counter/d",
            &[("content-type", "application/json")],
            Some(b"{\"add\""),
        )
        .assert_problem(400);
    let a = server.actor("counter", "d").json();
    assert_eq!(
        a["dead_letter_count"], 0,
        "the caller was told; nothing to retry"
    );
    assert_eq!(a["state"], Value::Null, "no turn changed the state");
}

#[test]
fn readiness_checks_that_the_store_takes_writes() {
    let server = Server::start(&[]);
    let r = server.get("/readyz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ready"}));
    assert_eq!(server.get("/healthz").json(), json!({"status": "ok"}));
}

#[test]
fn a_check_in_for_a_closed_flight_is_refused_with_409_and_waiting_callers_too() {
    // The boarding-pass service is down for good: no pass will come before closing.
    let service = FakeService::start(|_, _| answer(503, r#"{"error":"down"}"#));
    let server = Server::start(&["--allow-private-net", "--allow-http", &service.host_port()]);
    server.deploy("checkin", "checkin");
    let now = now_ms();
    let r = server.call(
        "checkin",
        "CLOSE1",
        json!({"type": "register", "booking": "CLOSE1", "passenger": "Ada",
               "checkin_opens_at_ms": now - 60_000, "checkin_closes_at_ms": now + 2_000,
               "boarding_pass_url": format!("{}/passes", service.url), "retry_ms": 200}),
    );
    assert_eq!(r.json(), json!({"registered": true}));
    // Ada checks in while it is open: she waits for a pass.
    let r = server.post_json(
        "/v1/actors/checkin/CLOSE1",
        &json!({"type": "check_in"}),
        &[("prefer", "respond-async")],
    );
    assert_eq!(r.status, 202);
    let waiting = r.header("location").unwrap();
    // Check-in closes without a pass: her request is refused as a conflict.
    let rec = server
        .request("GET", &waiting, &[("prefer", "wait=10")], None)
        .json();
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["refusal"], "conflict", "{rec}");
    assert!(rec["error"].as_str().unwrap().contains("closed"), "{rec}");
    // A check-in after closing is refused at once with 409 problem+json.
    let p = server
        .call("checkin", "CLOSE1", json!({"type": "check_in"}))
        .assert_problem(409);
    assert!(
        p["type"].as_str().unwrap().ends_with("/refused-conflict"),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("CLOSE1"), "{p}");
    let a = server.actor("checkin", "CLOSE1").json();
    assert_eq!(a["state"]["status"], "closed");
    assert_eq!(
        a["dead_letter_count"], 0,
        "refusals are answers, not failures"
    );
    assert!(
        a["timers"].as_array().unwrap().is_empty(),
        "no more retries: {a}"
    );
    // Registering with a closing time before the opening is invalid: 422.
    server
        .call(
            "checkin",
            "CLOSE2",
            json!({"type": "register", "booking": "CLOSE2", "passenger": "Bo",
                   "checkin_opens_at_ms": now + 10_000, "checkin_closes_at_ms": now,
                   "boarding_pass_url": format!("{}/passes", service.url)}),
        )
        .assert_problem(422);
}

#[test]
fn payment_refusals_carry_their_class_and_a_trap_stays_500() {
    let mut server = Server::start(&[]);
    server.deploy("payment", "payment");
    server.deploy("hostile", "hostile");
    // No card update is expected before a payment: a failed precondition.
    server
        .call(
            "payment",
            "p-9",
            json!({"type": "update_card", "card": "5500000000000004"}),
        )
        .assert_problem(412);
    // A zero amount is not a valid payment.
    server
        .call(
            "payment",
            "p-9",
            json!({"type": "pay", "amount": 0, "card": "4111", "provider_url": "http://127.0.0.1:1/"}),
        )
        .assert_problem(422);
    // A guest that traps is a 500, as before.
    server
        .call("hostile", "t", json!({"do": "trap"}))
        .assert_problem(500);
    assert!(server.is_running());
}

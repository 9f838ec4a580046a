//! The example processes end to end: automatic check-in (`examples/checkin`), payment
//! retrieval (`examples/payment`) and the trip-booking saga (`examples/trip`), each with its
//! failure branch, against fake external services.
//! Long because each example's happy and failure branches share the fake services set up
//! here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::fake::{FakeService, answer};
use crate::harness::{Resp, Server};

const LONG: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn body(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The actor's state as JSON.
fn state(server: &Server, module: &str, key: &str) -> Value {
    let a = server.actor(module, key);
    assert_eq!(a.status, 200, "inspect {module}/{key}: {}", body(&a));
    a.json()["state"].clone()
}

/// Poll a request (`Location`) until it has settled.
fn settled(server: &Server, location: &str) -> Value {
    server.eventually(LONG, "the request to settle", || {
        let r = server.request("GET", location, &[("prefer", "wait=5")], None);
        assert_eq!(r.status, 200, "GET {location}: {}", body(&r));
        let v = r.json();
        (v["status"] != "pending").then_some(v)
    })
}

/// Poll the actor's state until `check` holds.
fn state_where(
    server: &Server,
    module: &str,
    key: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    server.eventually(LONG, what, || {
        let s = state(server, module, key);
        check(&s).then_some(s)
    })
}

/// A call sent with `Prefer: respond-async`: its `Location`.
fn call_async(server: &Server, module: &str, key: &str, json: Value) -> String {
    let r = server.post_json(
        &format!("/v1/actors/{module}/{key}"),
        &json,
        &[("prefer", "respond-async")],
    );
    assert_eq!(r.status, 202, "{}", body(&r));
    r.header("location").expect("Location header")
}

fn call_waiting(server: &Server, module: &str, key: &str, json: Value) -> Resp {
    server.post_json(
        &format!("/v1/actors/{module}/{key}"),
        &json,
        &[("prefer", "wait=15")],
    )
}

// ---------------------------------------------------------------------------------------
// checkin

#[test]
fn check_in_survives_a_boarding_pass_service_that_is_down_twice_and_calls_back_with_the_pass() {
    // Down for its first two fetches (2 HTTP attempts each), then up.
    let passes = FakeService::start(|req, i| {
        if i < 4 {
            answer(503, r#"{"error":"down for maintenance"}"#)
        } else {
            let booking = req.json()["booking"].as_str().unwrap_or("?").to_owned();
            answer(
                200,
                &json!({"pass": format!("BP-{booking}-12A")}).to_string(),
            )
        }
    });
    let receiver = FakeService::start(|_, _| answer(200, "{}"));
    let server = Server::start(&[
        "--allow-private-net",
        "--allow-http",
        &passes.host_port(),
        "--allow-http",
        &receiver.host_port(),
    ]);
    server.deploy("checkin", "checkin");

    // Online check-in opens in 1.2 s.
    let opens_ms = now_ms() + 1200;
    let opens = Instant::now() + Duration::from_millis(opens_ms - now_ms());
    let r = server.call(
        "checkin",
        "6YZJWW",
        json!({
            "type": "register",
            "booking": "6YZJWW",
            "passenger": "Ada",
            "checkin_opens_at_ms": opens_ms,
            "boarding_pass_url": format!("{}/passes", passes.url),
            "retry_ms": 100,
        }),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json(), json!({"registered": true}));
    assert_eq!(
        state(&server, "checkin", "6YZJWW")["status"],
        "waiting_for_checkin"
    );

    // Ada checks in early: no pass within the second she waits → 202, pass by callback.
    let callback_url = format!("{}/boarding-pass", receiver.url);
    let r = server.post_json(
        "/v1/actors/checkin/6YZJWW",
        &json!({"type": "check_in"}),
        &[("prefer", "wait=1"), ("callback-url", &callback_url)],
    );
    assert_eq!(r.status, 202, "{}", body(&r));
    let location = r.header("location").expect("Location header");
    let request_id = r.json()["request_id"].as_str().unwrap().to_owned();

    let cb = server.eventually(LONG, "the pass at the callback URL", || {
        receiver.received().into_iter().next()
    });
    assert_eq!(cb.method, "POST");
    assert_eq!(cb.path, "/boarding-pass");
    assert!(
        cb.header("webhook-signature").is_some(),
        "callbacks are signed"
    );
    let delivered = cb.json();
    assert_eq!(delivered["status"], "completed", "{delivered}");
    assert_eq!(delivered["request_id"], request_id.as_str());
    assert_eq!(delivered["reply"], json!({"pass": "BP-6YZJWW-12A"}));

    // The service was asked only once check-in had opened, with the booking, five times:
    // two failed fetches of two attempts each, then the one that worked.
    let asked = passes.received();
    assert_eq!(asked.len(), 5, "{asked:?}");
    for a in &asked {
        assert_eq!(a.path, "/passes");
        assert_eq!(a.json(), json!({"booking": "6YZJWW", "passenger": "Ada"}));
    }
    assert!(
        asked[0].at + Duration::from_millis(20) >= opens,
        "no fetch before check-in opened"
    );

    let s = state(&server, "checkin", "6YZJWW");
    assert_eq!(s["status"], "issued");
    assert_eq!(s["attempts"], 3);
    assert_eq!(s["pass"], "BP-6YZJWW-12A");
    assert_eq!(s["waiting"], json!([]));
    assert_eq!(s["last_error"], Value::Null);
    let done = settled(&server, &location);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["reply"], json!({"pass": "BP-6YZJWW-12A"}));

    // Later check-ins are answered at once.
    let r = server.call("checkin", "6YZJWW", json!({"type": "check_in"}));
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json(), json!({"pass": "BP-6YZJWW-12A"}));
}

#[test]
fn check_in_gets_the_pass_in_its_own_call_when_the_service_is_up() {
    let passes = FakeService::start(|req, _| {
        let booking = req.json()["booking"].as_str().unwrap_or("?").to_owned();
        answer(
            200,
            &json!({"pass": format!("BP-{booking}-7C")}).to_string(),
        )
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &passes.host_port()]);
    server.deploy("checkin", "checkin");

    // Registered by an event, with check-in already open: the fetch starts at once.
    let e = server.event(
        "checkin",
        "QQ1234",
        json!({
            "type": "register",
            "booking": "QQ1234",
            "passenger": "Grace",
            "checkin_opens_at_ms": now_ms() - 60_000,
            "boarding_pass_url": format!("{}/passes", passes.url),
        }),
    );
    assert_eq!(e.status, 202, "{}", body(&e));
    let started = Instant::now();
    let r = call_waiting(&server, "checkin", "QQ1234", json!({"type": "check_in"}));
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json(), json!({"pass": "BP-QQ1234-7C"}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered quickly"
    );

    let s = state(&server, "checkin", "QQ1234");
    assert_eq!(s["status"], "issued");
    assert_eq!(s["attempts"], 1);
    assert_eq!(s["booking"], "QQ1234");
    assert_eq!(s["passenger"], "Grace");
    assert_eq!(passes.count(), 1);
    let r = server.call("checkin", "QQ1234", json!({"type": "check_in"}));
    assert_eq!(r.json(), json!({"pass": "BP-QQ1234-7C"}));
}

// ---------------------------------------------------------------------------------------
// payment

fn pay(amount: u64, card: &str, provider: &FakeService, update_timeout_ms: u64) -> Value {
    json!({
        "type": "pay",
        "amount": amount,
        "card": card,
        "provider_url": format!("{}/charge", provider.url),
        "update_timeout_ms": update_timeout_ms,
    })
}

fn open(server: &Server, key: &str, credit: u64) {
    let r = server.call(
        "payment",
        key,
        json!({"type": "open", "customer": "c1", "credit": credit}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json(), json!({"credit": credit}));
}

#[test]
fn payment_uses_the_credit_first_and_charges_only_the_rest_to_the_card() {
    let provider = FakeService::start(|_, _| answer(200, r#"{"status":"approved"}"#));
    let server = Server::start(&["--allow-private-net", "--allow-http", &provider.host_port()]);
    server.deploy("payment", "payment");

    // Credit covers the amount: answered at once, no card charged.
    open(&server, "p-credit", 100);
    let r = call_waiting(
        &server,
        "payment",
        "p-credit",
        pay(60, "4111111111111111", &provider, 5000),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        r.json(),
        json!({"status": "payment received", "charged_card": 0, "used_credit": 60})
    );
    let s = state(&server, "payment", "p-credit");
    assert_eq!(s["credit"], 40);
    assert_eq!(s["status"], "paid");
    assert_eq!(s["charge_attempts"], 0);
    assert_eq!(provider.count(), 0, "the card was not charged");

    // Credit does not cover it: the rest is charged and approved.
    open(&server, "p-card", 100);
    let r = call_waiting(
        &server,
        "payment",
        "p-card",
        pay(250, "4111111111111111", &provider, 5000),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        r.json(),
        json!({"status": "payment received", "charged_card": 150, "used_credit": 100})
    );
    let charges = provider.received();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].path, "/charge");
    assert_eq!(
        charges[0].json(),
        json!({"amount": 150, "card": "4111111111111111"})
    );
    let s = state(&server, "payment", "p-card");
    assert_eq!(s["credit"], 0);
    assert_eq!(s["status"], "paid");
    assert_eq!(s["charge_attempts"], 1);
    assert_eq!(s["charged_card"], 150);
    assert_eq!(s["card_last4"], "1111");
    assert_eq!(s["compensated"], false);

    // A paid payment is a completed process.
    assert_eq!(
        server.actor("payment", "p-card").json()["status"],
        "completed"
    );
    server
        .call(
            "payment",
            "p-card",
            json!({"type": "update_card", "card": "5500000000000004"}),
        )
        .assert_problem(409);
}

#[test]
fn a_declined_card_waits_for_an_update_and_the_new_card_pays() {
    // Cards starting with 4 are declined.
    let provider = FakeService::start(|req, _| {
        if req.json()["card"].as_str().unwrap_or("").starts_with('4') {
            answer(402, r#"{"status":"declined"}"#)
        } else {
            answer(200, r#"{"status":"approved"}"#)
        }
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &provider.host_port()]);
    server.deploy("payment", "payment");
    open(&server, "p-2", 100);

    let location = call_async(
        &server,
        "payment",
        "p-2",
        pay(250, "4111111111111111", &provider, 10_000),
    );
    let s = state_where(&server, "payment", "p-2", "the first decline", |s| {
        s["status"] == "awaiting_card_update"
    });
    assert_eq!(s["credit"], 0, "the credit is held while waiting");
    assert_eq!(s["charge_attempts"], 1);
    assert_eq!(
        server.get(&location).json()["status"],
        "pending",
        "the pay request waits"
    );

    // Another card that is declined too: the process waits again.
    let r = server.call(
        "payment",
        "p-2",
        json!({"type": "update_card", "card": "4000000000000002"}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json(), json!({"status": "charging", "charge_attempt": 2}));
    state_where(&server, "payment", "p-2", "the second decline", |s| {
        s["status"] == "awaiting_card_update" && s["charge_attempts"] == 2
    });

    // A card that works, as an event.
    let e = server.event(
        "payment",
        "p-2",
        json!({"type": "update_card", "card": "5500000000000004"}),
    );
    assert_eq!(e.status, 202, "{}", body(&e));
    let done = settled(&server, &location);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["reply"],
        json!({"status": "payment received", "charged_card": 150, "used_credit": 100})
    );

    let cards: Vec<Value> = provider.received().iter().map(|r| r.json()).collect();
    assert_eq!(
        cards,
        vec![
            json!({"amount": 150, "card": "4111111111111111"}),
            json!({"amount": 150, "card": "4000000000000002"}),
            json!({"amount": 150, "card": "5500000000000004"}),
        ]
    );
    let s = state(&server, "payment", "p-2");
    assert_eq!(s["status"], "paid");
    assert_eq!(s["charge_attempts"], 3);
    assert_eq!(s["credit"], 0);
    assert_eq!(s["card_last4"], "0004");
    assert_eq!(s["compensated"], false);
}

#[test]
fn a_declined_card_not_updated_in_time_gives_the_credit_back_and_fails_the_payment() {
    let provider = FakeService::start(|_, _| answer(402, r#"{"status":"declined"}"#));
    let server = Server::start(&["--allow-private-net", "--allow-http", &provider.host_port()]);
    server.deploy("payment", "payment");
    open(&server, "p-3", 100);

    let location = call_async(
        &server,
        "payment",
        "p-3",
        pay(250, "4111111111111111", &provider, 800),
    );
    let s = state_where(&server, "payment", "p-3", "the decline", |s| {
        s["status"] == "awaiting_card_update"
    });
    let declined_at = Instant::now();
    assert_eq!(s["credit"], 0);
    assert_eq!(s["compensated"], false);

    let done = settled(&server, &location);
    assert!(
        declined_at.elapsed() >= Duration::from_millis(600),
        "the customer had the update timeout to react"
    );
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap_or_default()
            .contains("payment failed: card declined and not updated in time"),
        "{done}"
    );

    let a = server.actor("payment", "p-3").json();
    assert_eq!(a["status"], "completed");
    let s = &a["state"];
    assert_eq!(s["credit"], 100, "the credit is restored");
    assert_eq!(s["compensated"], true);
    assert_eq!(s["status"], "failed");
    assert_eq!(s["charge_attempts"], 1);
    assert_eq!(provider.count(), 1);

    // Too late: the process is complete.
    server
        .call(
            "payment",
            "p-3",
            json!({"type": "update_card", "card": "5500000000000004"}),
        )
        .assert_problem(409);
}

// ---------------------------------------------------------------------------------------
// trip

/// One fake for the three booking services: `/car`, `/hotel`, `/flight`. `fail(step,
/// action)` names an answer that replaces the normal `200 {"booking_id": "<STEP>-1"}`.
fn booking_services(
    fail: impl Fn(&str, &str) -> Option<(u16, &'static str)> + Send + 'static,
) -> FakeService {
    FakeService::start(move |req, _| {
        let step = req.path.trim_start_matches('/').to_owned();
        let action = req.json()["action"].as_str().unwrap_or("?").to_owned();
        if step == "hotel" && action == "cancel" {
            // Slow, to show the next cancellation waits for this one.
            std::thread::sleep(Duration::from_millis(150));
        }
        match fail(&step, &action) {
            Some((status, body)) => answer(status, body),
            None => answer(
                200,
                &json!({"booking_id": format!("{}-1", step.to_uppercase())}).to_string(),
            ),
        }
    })
}

fn book(trip: &str, services: &FakeService) -> Value {
    json!({
        "type": "book",
        "trip": trip,
        "car_url": format!("{}/car", services.url),
        "hotel_url": format!("{}/hotel", services.url),
        "flight_url": format!("{}/flight", services.url),
        "timeout_ms": 2000,
    })
}

/// What the services saw: (path, body) in arrival order.
fn seen(services: &FakeService) -> Vec<(String, Value)> {
    services
        .received()
        .iter()
        .map(|r| (r.path.clone(), r.json()))
        .collect()
}

fn pair(path: &str, body: Value) -> (String, Value) {
    (path.to_owned(), body)
}

#[test]
fn trip_books_car_then_hotel_then_flight() {
    let services = booking_services(|_, _| None);
    let server = Server::start(&["--allow-private-net", "--allow-http", &services.host_port()]);
    server.deploy("trip", "trip");

    let r = call_waiting(&server, "trip", "T1", book("T1", &services));
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        r.json(),
        json!({"status": "booked", "car": "CAR-1", "hotel": "HOTEL-1", "flight": "FLIGHT-1"})
    );
    let book_body = json!({"trip": "T1", "action": "book"});
    assert_eq!(
        seen(&services),
        vec![
            pair("/car", book_body.clone()),
            pair("/hotel", book_body.clone()),
            pair("/flight", book_body),
        ]
    );
    let a = server.actor("trip", "T1").json();
    assert_eq!(a["status"], "completed");
    let s = &a["state"];
    assert_eq!(s["status"], "booked");
    assert_eq!(
        s["booked"],
        json!([
            {"step": "car", "booking_id": "CAR-1"},
            {"step": "hotel", "booking_id": "HOTEL-1"},
            {"step": "flight", "booking_id": "FLIGHT-1"},
        ])
    );
    assert_eq!(s["cancelled"], json!([]));
    server
        .call("trip", "T1", book("T1", &services))
        .assert_problem(409);
}

#[test]
fn trip_whose_hotel_fails_cancels_the_car_and_never_books_the_flight() {
    let services = booking_services(|step, action| {
        (step == "hotel" && action == "book").then_some((503, r#"{"error":"overbooked"}"#))
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &services.host_port()]);
    server.deploy("trip", "trip");

    let location = call_async(&server, "trip", "T2", book("T2", &services));
    let done = settled(&server, &location);
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(error.contains("trip failed at hotel: HTTP 503"), "{error}");
    assert!(error.ends_with("cancelled car"), "{error}");

    let book_body = json!({"trip": "T2", "action": "book"});
    assert_eq!(
        seen(&services),
        vec![
            pair("/car", book_body.clone()),
            // A 503 is retried once (2 attempts per step), then the step has failed.
            pair("/hotel", book_body.clone()),
            pair("/hotel", book_body),
            pair(
                "/car",
                json!({"trip": "T2", "action": "cancel", "booking_id": "CAR-1"})
            ),
        ],
        "the flight is never called"
    );
    let a = server.actor("trip", "T2").json();
    assert_eq!(a["status"], "completed");
    let s = &a["state"];
    assert_eq!(s["status"], "failed");
    assert_eq!(s["failed_step"], "hotel");
    assert_eq!(s["booked"], json!([{"step": "car", "booking_id": "CAR-1"}]));
    assert_eq!(s["cancelled"], json!(["car"]));
}

#[test]
fn trip_whose_flight_fails_cancels_the_hotel_then_the_car() {
    let services = booking_services(|step, action| {
        (step == "flight" && action == "book").then_some((409, r#"{"error":"sold out"}"#))
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &services.host_port()]);
    server.deploy("trip", "trip");

    let location = call_async(&server, "trip", "T3", book("T3", &services));
    let done = settled(&server, &location);
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("trip failed at flight: HTTP 409") && error.contains("sold out"),
        "{error}"
    );
    assert!(error.ends_with("cancelled hotel, car"), "{error}");

    let book_body = json!({"trip": "T3", "action": "book"});
    assert_eq!(
        seen(&services),
        vec![
            pair("/car", book_body.clone()),
            pair("/hotel", book_body.clone()),
            // A 409 is final: one attempt.
            pair("/flight", book_body),
            pair(
                "/hotel",
                json!({"trip": "T3", "action": "cancel", "booking_id": "HOTEL-1"})
            ),
            pair(
                "/car",
                json!({"trip": "T3", "action": "cancel", "booking_id": "CAR-1"})
            ),
        ]
    );
    // The car's cancellation was sent only after the (slow) hotel one had been answered.
    let received = services.received();
    assert!(
        received[4].at >= received[3].at + Duration::from_millis(150),
        "cancellations run one after the other"
    );

    let s = state(&server, "trip", "T3");
    assert_eq!(s["status"], "failed");
    assert_eq!(s["failed_step"], "flight");
    assert_eq!(s["cancelled"], json!(["hotel", "car"]));
    assert_eq!(s["cancel_failed"], json!([]));
}

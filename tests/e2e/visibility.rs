//! Seeing many processes: turn history with state as of a turn, the actor and request
//! lists, the process map mined from history, retention, tenant scoping and the CLI —
//! driven through the check-in, payment and trip examples and the counter.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::fake::{FakeService, answer};
use crate::harness::Server;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn ok(server: &Server, path: &str) -> Value {
    let r = server.get(path);
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

fn node<'a>(map: &'a Value, id: &str) -> &'a Value {
    map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no step {id:?} in the map: {map:#}"))
}

fn edge<'a>(map: &'a Value, from: &str, to: &str) -> Option<&'a Value> {
    map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["from"] == from && e["to"] == to)
}

/// The effect of `kind` a turn recorded (the first, if several).
fn effect<'a>(turn: &'a Value, kind: &str) -> &'a Value {
    turn["effects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} effect in {turn:#}"))
}

/// Register check-in `booking` (an event): check-in opens at `opens_ms`, the boarding
/// pass comes from `url`, fetches are retried after `retry_ms`.
pub(crate) fn register(server: &Server, booking: &str, opens_ms: u64, url: &str, retry_ms: u64) {
    let r = server.event(
        "checkin",
        booking,
        json!({
            "type": "register",
            "booking": booking,
            "passenger": "Ada",
            "checkin_opens_at_ms": opens_ms,
            "boarding_pass_url": url,
            "retry_ms": retry_ms,
        }),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn the_checkin_map_has_the_steps_and_edges_the_test_drove_and_who_waits_where() {
    // Bookings starting with OK get a pass; DOWN ones meet a service that is down.
    let passes = FakeService::start(|req, _| {
        let booking = req.json()["booking"].as_str().unwrap_or("?").to_owned();
        if booking.starts_with("DOWN") {
            answer(503, "{}")
        } else {
            answer(200, &json!({"pass": format!("BP-{booking}")}).to_string())
        }
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &passes.host_port()]);
    server.deploy("checkin", "checkin");
    let url = format!("{}/passes", passes.url);
    let past = now_ms() - 60_000;
    for i in 0..12 {
        register(&server, &format!("OK{i}"), past, &url, 500);
    }
    for i in 0..4 {
        // A long first retry: after one failed fetch they wait in the retry step.
        register(&server, &format!("DOWN{i}"), past, &url, 30_000);
    }
    for i in 0..5 {
        register(
            &server,
            &format!("LATER{i}"),
            now_ms() + 3_600_000,
            &url,
            500,
        );
    }
    server.eventually(
        Duration::from_secs(30),
        "the passes and the failures",
        || {
            let issued = ok(
                &server,
                "/v1/actors?module=checkin&step=boarding%20pass%20issued",
            );
            let retry = ok(
                &server,
                "/v1/actors?module=checkin&step=boarding%20pass%20service%20retry",
            );
            (issued["items"].as_array()?.len() == 12 && retry["items"].as_array()?.len() == 4)
                .then_some(())
        },
    );

    let map = ok(&server, "/v1/modules/checkin/map");
    assert_eq!(map["module"], "checkin");
    assert_eq!(map["actors"], 21, "{map:#}");
    assert_eq!(map["truncated"], false);
    let registered = node(&map, "registered");
    assert_eq!(
        (&registered["count"], &registered["waiting"]),
        (&json!(16), &json!(0))
    );
    let later = node(&map, "waiting for check-in to open");
    assert_eq!((&later["count"], &later["waiting"]), (&json!(5), &json!(5)));
    let issued = node(&map, "boarding pass issued");
    assert_eq!(
        (&issued["count"], &issued["waiting"]),
        (&json!(12), &json!(12))
    );
    let retry = node(&map, "boarding pass service retry");
    assert_eq!((&retry["count"], &retry["waiting"]), (&json!(4), &json!(4)));
    assert_eq!(node(&map, "awaiting boarding pass")["waiting"], 0);
    let e = edge(&map, "registered", "awaiting boarding pass").expect("registered → fetching");
    assert_eq!(e["count"], 16);
    let e = edge(&map, "awaiting boarding pass", "boarding pass issued").expect("fetched");
    assert_eq!(e["count"], 12);
    assert!(e["p95_ms"].as_u64() >= e["p50_ms"].as_u64(), "{e}");
    let e = edge(
        &map,
        "awaiting boarding pass",
        "boarding pass service retry",
    )
    .expect("failed");
    assert_eq!(e["count"], 4);
    assert!(
        map["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["from"] != "waiting for check-in to open"),
        "nobody left the step before check-in opens: {map:#}"
    );
    assert_eq!(map["edges"].as_array().unwrap().len(), 3, "{map:#}");

    // One booking's history: each turn with its message, step and effects.
    let h = ok(&server, "/v1/actors/checkin/OK3/history");
    let items = h["items"].as_array().unwrap();
    assert_eq!(h["next_cursor"], Value::Null);
    let seqs: Vec<u64> = items.iter().map(|t| t["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 1, 0], "newest first: {h:#}");
    let (reg, open, fetched) = (&items[2], &items[1], &items[0]);
    assert_eq!(reg["message"]["kind"], "event");
    assert_eq!(reg["message"]["label"], "register");
    assert_eq!(reg["message"]["body"]["booking"], "OK3");
    assert_eq!(reg["step"], "registered");
    assert_eq!(reg["outcome"]["status"], "ok");
    assert_eq!(effect(reg, "set_timer")["name"], "open");
    assert_eq!(effect(reg, "cancel_timer")["name"], "retry");
    assert_eq!(open["message"]["kind"], "timer");
    assert_eq!(open["message"]["label"], "open");
    assert_eq!(effect(open, "http_call")["call_id"], "pass-1");
    assert_eq!(effect(open, "http_call")["url"], url.as_str());
    assert_eq!(fetched["message"]["kind"], "http_result");
    assert_eq!(fetched["step"], "boarding pass issued");
    assert!(fetched["state_bytes"].as_u64().unwrap() > 0);
    // The turn that issued the pass: the state then, the one before and their diff.
    let t = ok(&server, "/v1/actors/checkin/OK3/history/2");
    assert_eq!(t["state_known"], true);
    assert_eq!(t["state"]["status"], "issued");
    assert_eq!(t["state"]["pass"], "BP-OK3");
    assert_eq!(t["previous_state"]["status"], "fetching");
    let diff = t["diff"].as_array().unwrap();
    assert!(
        diff.contains(
            &json!({"op": "replace", "path": "/status", "value": "issued", "old": "fetching"})
        ),
        "{t:#}"
    );
    // The first turn: nothing before it.
    let t = ok(&server, "/v1/actors/checkin/OK3/history/0");
    assert_eq!(t["previous_known"], true);
    assert_eq!(t["previous_state"], Value::Null);
    assert_eq!(t["state"]["status"], "registered");
    server
        .get("/v1/actors/checkin/OK3/history/3")
        .assert_problem(404);

    // The actor view and the list name the step too.
    assert_eq!(
        server.actor("checkin", "LATER2").json()["step"],
        "waiting for check-in to open"
    );
    let waiting = ok(
        &server,
        "/v1/actors?module=checkin&step=waiting%20for%20check-in%20to%20open&limit=2",
    );
    assert_eq!(waiting["items"].as_array().unwrap().len(), 2);
    assert!(waiting["next_cursor"].is_string());
}

#[test]
fn state_as_of_a_turn_is_the_state_the_caller_saw_then_and_refusals_leave_it() {
    let server = Server::start(&[]);
    server.deploy("checkin", "checkin");
    register(
        &server,
        "S1",
        now_ms() + 3_600_000,
        "http://127.0.0.1:9/p",
        500,
    );
    let first = server.eventually(Duration::from_secs(10), "the registration", || {
        let s = server.actor("checkin", "S1").json()["state"].clone();
        (s["status"] == "waiting_for_checkin").then_some(s)
    });
    // An event the process refuses: consumed, the state stays.
    let r = server.event("checkin", "S1", json!({"type": "check_in"}));
    assert_eq!(r.status, 202);
    let r = server.call(
        "checkin",
        "S1",
        json!({"type": "boarding_pass_ready", "pass": "BP-S1"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let second = server.actor("checkin", "S1").json()["state"].clone();
    assert_eq!(second["pass"], "BP-S1");

    let t0 = ok(&server, "/v1/actors/checkin/S1/history/0");
    assert_eq!(
        t0["state"], first,
        "the state as of turn 0 is what the caller saw then"
    );
    let t1 = ok(&server, "/v1/actors/checkin/S1/history/1");
    assert_eq!(t1["outcome"]["status"], "refused", "{t1:#}");
    assert!(
        t1["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("request")
    );
    assert_eq!(t1["state_changed"], false);
    assert_eq!(t1["state"], first, "a refusal leaves the state");
    assert_eq!(t1["diff"], json!([]));
    let t2 = ok(&server, "/v1/actors/checkin/S1/history/2");
    assert_eq!(t2["message"]["kind"], "call");
    assert_eq!(effect(&t2, "reply")["ok"], true);
    assert_eq!(effect(&t2, "cancel_timer")["name"], "open");
    assert_eq!(t2["state"], second);
    assert_eq!(t2["previous_state"], first);
    assert_eq!(t2["step"], "boarding pass issued");
}

#[test]
fn history_stays_within_its_tenants_retention_and_pages_and_other_tenants_see_nothing() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    let admin = format!("Bearer {}", server.admin_key);
    let r = server.request(
        "PATCH",
        "/v1/tenants/default",
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        Some(br#"{"quotas": {"history_turns": 5}}"#),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A hot actor: 40 turns, only 5 records stay.
    for i in 1..=40 {
        let r = server.call("counter", "hot", json!({"add": 1}));
        assert_eq!(r.json(), json!({"total": i}));
    }
    let mut seen = Vec::new();
    let mut path = "/v1/actors/counter/hot/history?limit=2".to_owned();
    loop {
        let page = ok(&server, &path);
        for t in page["items"].as_array().unwrap() {
            seen.push(t["seq"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/actors/counter/hot/history?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [39, 38, 37, 36, 35],
        "the last five, paged newest first"
    );
    let t = ok(&server, "/v1/actors/counter/hot/history/39");
    assert_eq!(t["state"], json!({"total": 40}));
    assert_eq!(t["previous_state"], json!({"total": 39}));
    assert_eq!(
        t["diff"],
        json!([{"op": "replace", "path": "/total", "value": 40, "old": 39}])
    );
    server
        .get("/v1/actors/counter/hot/history/3")
        .assert_problem(404);

    // Lists page through every actor once.
    for k in ["a", "b", "c", "d"] {
        server.call("counter", k, json!({"add": 2}));
    }
    let mut keys = BTreeSet::new();
    let mut path = "/v1/actors?limit=2".to_owned();
    for _ in 0..10 {
        let page = ok(&server, &path);
        for a in page["items"].as_array().unwrap() {
            assert!(
                keys.insert(a["key"].as_str().unwrap().to_owned()),
                "listed twice: {a}"
            );
            assert_eq!(a["module"], "counter");
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/actors?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "hot"]
    );
    let done = ok(&server, "/v1/requests?status=completed&limit=1000");
    assert_eq!(done["items"].as_array().unwrap().len(), 44);
    assert_eq!(
        ok(&server, "/v1/requests?status=pending")["items"],
        json!([])
    );
    server.get("/v1/actors?status=asleep").assert_problem(400);
    server.get("/v1/actors?limit=0").assert_problem(400);
    server
        .get("/v1/actors/counter/hot/history?cursor=soon")
        .assert_problem(400);
    server.get("/v1/actors?colour=red").assert_problem(400);
    server.get("/v1/requests?cursor=xyz").assert_problem(400);

    // Another tenant: nothing of the default tenant's, its own map 404.
    let other = format!("Bearer {}", server.new_tenant("other"));
    let as_other = |path: &str| server.request("GET", path, &[("authorization", &other)], None);
    as_other("/v1/actors/counter/hot/history").assert_problem(404);
    as_other("/v1/actors/counter/hot/history/39").assert_problem(404);
    as_other("/v1/modules/counter/map").assert_problem(404);
    assert_eq!(
        as_other("/v1/actors").json(),
        json!({"items": [], "next_cursor": null})
    );
    assert_eq!(
        as_other("/v1/requests").json(),
        json!({"items": [], "next_cursor": null})
    );
    // Deleting the actor forgets its history.
    assert_eq!(
        server
            .request("DELETE", "/v1/actors/counter/hot", &[], None)
            .status,
        204
    );
    server
        .get("/v1/actors/counter/hot/history")
        .assert_problem(404);
}

#[test]
fn the_payment_map_follows_paid_and_declined_paths() {
    let provider = FakeService::start(|req, _| {
        if req.json()["card"]
            .as_str()
            .is_some_and(|c| c.ends_with("0002"))
        {
            answer(402, "{}")
        } else {
            answer(200, r#"{"status":"approved"}"#)
        }
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &provider.host_port()]);
    server.deploy("payment", "payment");
    for i in 0..6 {
        let key = format!("p{i}");
        let r = server.call(
            "payment",
            &key,
            json!({"type": "open", "customer": "c", "credit": 0}),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let card = if i < 2 {
            "4000000000000002"
        } else {
            "4242424242424242"
        };
        server.post_json(
            &format!("/v1/actors/payment/{key}"),
            &json!({
                "type": "pay", "amount": 500, "card": card,
                "provider_url": format!("{}/charge", provider.url),
                "update_timeout_ms": 3_600_000,
            }),
            &[("prefer", "respond-async")],
        );
    }
    server.eventually(Duration::from_secs(30), "payments to settle", || {
        let map = ok(&server, "/v1/modules/payment/map");
        let paid = map["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == "paid")?;
        let waiting = map["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == "awaiting a card update")?;
        (paid["count"] == 4 && waiting["waiting"] == 2).then_some(())
    });
    let map = ok(&server, "/v1/modules/payment/map");
    assert_eq!(
        edge(&map, "new", "charging").unwrap()["count"],
        6,
        "{map:#}"
    );
    assert_eq!(
        edge(&map, "charging", "paid").unwrap()["count"],
        4,
        "{map:#}"
    );
    assert_eq!(
        edge(&map, "charging", "awaiting a card update").unwrap()["count"],
        2
    );
    assert_eq!(
        node(&map, "paid")["waiting"],
        0,
        "a paid payment is complete"
    );
}

/// `dwell <args>` against `server`, its key files in its data directory.
fn dwell(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dwell"))
        .args(args)
        .env("DWELL_URL", &server.base)
        .env("DWELL_DATA", &server.data)
        .env_remove("DWELL_KEY")
        .env_remove("DWELL_OUTPUT")
        .output()
        .expect("run dwell");
    assert!(
        out.status.success(),
        "dwell {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cli_lists_actors_shows_history_and_draws_the_map_as_tables_or_json() {
    let server = Server::start(&[]);
    server.deploy("checkin", "checkin");
    register(
        &server,
        "CLI1",
        now_ms() + 3_600_000,
        "http://127.0.0.1:9/p",
        500,
    );
    server.eventually(Duration::from_secs(10), "the registration", || {
        (server.actor("checkin", "CLI1").json()["turns"] == 1).then_some(())
    });
    let actors = dwell(&server, &["actors", "--module", "checkin"]);
    assert!(actors.starts_with("ACTOR"), "{actors}");
    assert!(actors.contains("checkin/CLI1"), "{actors}");
    assert!(actors.contains("waiting for check-in to open"), "{actors}");
    let history = dwell(&server, &["history", "checkin/CLI1"]);
    assert!(history.contains("event register"), "{history}");
    assert!(history.contains("set_timer:open"), "{history}");
    let turn = dwell(&server, &["history", "checkin/CLI1", "--seq", "0"]);
    assert!(
        turn.contains("\"status\": \"waiting_for_checkin\""),
        "{turn}"
    );
    let map = dwell(&server, &["map", "checkin"]);
    assert!(map.contains("waiting for check-in to open"), "{map}");
    let json: Value = serde_json::from_str(&dwell(&server, &["map", "checkin", "--json"])).unwrap();
    assert_eq!(node(&json, "waiting for check-in to open")["waiting"], 1);
    let json: Value = serde_json::from_str(&dwell(&server, &["--json", "actors"])).unwrap();
    assert_eq!(json["items"][0]["key"], "CLI1");
}

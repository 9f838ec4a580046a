//! The foundation stories: calls, sync-then-async replies, durability across SIGKILL,
//! hostile guests and hostile input.
//! Long because each story is one test that drives the real server end to end.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Server, test_postgres};

#[test]
fn counter_answers_sequential_and_spread_calls_with_the_right_totals() {
    let server = Server::start(&[]);
    let deployed = server.deploy("counter", "counter");
    assert_eq!(deployed["version"], 1);
    assert!(deployed["digest"].as_str().unwrap().starts_with("sha256:"));

    for i in 1..=200 {
        let r = server.call("counter", "solo", json!({"add": 1}));
        assert_eq!(
            r.status,
            200,
            "call {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json(), json!({"total": i}));
    }
    let solo = server.actor("counter", "solo").json();
    assert_eq!(solo["state"], json!({"total": 200}));
    assert_eq!(solo["turns"], 200);
    assert_eq!(solo["mailbox_depth"], 0);

    // 200 calls over 50 actors from 8 threads: actor k gets 4 calls adding k.
    std::thread::scope(|s| {
        for t in 0..8 {
            let server = &server;
            s.spawn(move || {
                for n in (t..200).step_by(8) {
                    let k = n % 50;
                    let r = server.call("counter", &format!("a{k}"), json!({"add": k}));
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    assert!(r.json()["total"].as_i64().unwrap() % (k.max(1) as i64) == 0);
                }
            });
        }
    });
    for k in 0..50 {
        let a = server.actor("counter", &format!("a{k}")).json();
        assert_eq!(a["state"], json!({"total": 4 * k}), "actor a{k}");
    }
}

#[test]
fn check_in_waits_for_the_boarding_pass_then_answers_sync_or_async() {
    let server = Server::start(&[]);
    server.deploy("checkin", "checkin");

    // The pass is not ready within the wait: 202 with a Location to poll.
    let started = Instant::now();
    let r = server.post_json(
        "/v1/actors/checkin/6YZJWW",
        &json!({"type": "check_in"}),
        &[("prefer", "wait=1")],
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited about 1 s"
    );
    let location = r.header("location").expect("Location header");
    assert!(location.starts_with("/v1/requests/"));
    assert_eq!(r.json()["status"], "pending");
    assert_eq!(server.get(&location).json()["status"], "pending");

    // The boarding-pass service reports back; the stored reply handle answers the caller.
    let e = server.event(
        "checkin",
        "6YZJWW",
        json!({"type": "boarding_pass_ready", "pass": "BP-6YZJWW-12A"}),
    );
    assert_eq!(e.status, 202);
    let done = server
        .request("GET", &location, &[("prefer", "wait=5")], None)
        .json();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["reply"], json!({"pass": "BP-6YZJWW-12A"}));

    // A second check-in whose event arrives inside the wait gets 200 with the pass.
    std::thread::scope(|s| {
        let caller = s.spawn(|| {
            server.post_json(
                "/v1/actors/checkin/QQ1234",
                &json!({"type": "check_in"}),
                &[("prefer", "wait=10")],
            )
        });
        server.eventually(
            Duration::from_secs(10),
            "the check-in to be waiting",
            || {
                let a = server.actor("checkin", "QQ1234");
                (a.status == 200
                    && a.json()["state"]["waiting"]
                        .as_array()
                        .is_some_and(|w| w.len() == 1))
                .then_some(())
            },
        );
        let e = server.event(
            "checkin",
            "QQ1234",
            json!({"type": "boarding_pass_ready", "pass": "BP-QQ1234-3C"}),
        );
        assert_eq!(e.status, 202);
        let r = caller.join().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"pass": "BP-QQ1234-3C"}));
    });

    // Prefer: respond-async answers 202 at once, and the request completes by itself.
    let r = server.post_json(
        "/v1/actors/checkin/QQ1234",
        &json!({"type": "check_in"}),
        &[("prefer", "respond-async")],
    );
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap();
    let done = server
        .request("GET", &loc, &[("prefer", "wait=5")], None)
        .json();
    assert_eq!(done["reply"], json!({"pass": "BP-QQ1234-3C"}));
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    let mut server = Server::start(&[]);
    server.deploy("counter", "counter");
    // 1,000 events to 100 actors: actor k gets 10 events adding k+1.
    std::thread::scope(|s| {
        for t in 0..4 {
            let server = &server;
            s.spawn(move || {
                for n in (t..1000).step_by(4) {
                    let k = n % 100;
                    let r = server.event("counter", &format!("c{k}"), json!({"add": k + 1}));
                    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
                }
            });
        }
    });
    // Kill at once: some events are surely still in mailboxes, unprocessed.
    server.kill();
    server.restart();
    for k in 0..100 {
        let expected = 10 * (k + 1);
        server.eventually(
            Duration::from_secs(30),
            "all acknowledged events applied",
            || {
                let a = server.actor("counter", &format!("c{k}")).json();
                (a["mailbox_depth"] == 0).then_some(())
            },
        );
        let a = server.actor("counter", &format!("c{k}")).json();
        assert_eq!(a["state"], json!({"total": expected}), "actor c{k}: {a}");
        assert_eq!(a["turns"], 10);
    }
}

#[test]
fn sigkill_in_the_middle_of_calls_and_events_loses_and_doubles_nothing() {
    let mut server = Server::start(&[]);
    server.deploy("counter", "counter");
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Acknowledged so far, over all senders: the kill comes once the server is busy
    // (a fixed time would leave a slow backend, or a loaded machine, nearly idle).
    let acked_so_far = std::sync::atomic::AtomicU64::new(0);
    // Each sender has its own 10 actors and at most one message in flight. Per actor:
    // (acknowledged count, acknowledged sum, the message in flight when the server died).
    type Tally = std::collections::HashMap<String, (u64, u64, Option<u64>)>;
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..6)
            .map(|t| {
                let (server, stop, acked_so_far) = (&server, &stop, &acked_so_far);
                s.spawn(move || {
                    let mut tally = Tally::new();
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let key = format!("k{t}-{}", n % 10);
                        let add = n % 7 + 1;
                        let body = json!({ "add": add });
                        let path = if n.is_multiple_of(2) {
                            format!("/v1/actors/counter/{key}")
                        } else {
                            format!("/v1/actors/counter/{key}/events")
                        };
                        let entry = tally.entry(key).or_default();
                        match server.try_request(
                            "POST",
                            &path,
                            &[("content-type", "application/json")],
                            Some(body.to_string().as_bytes()),
                        ) {
                            Ok(r) if r.status == 200 || r.status == 202 => {
                                entry.0 += 1;
                                entry.1 += add;
                                acked_so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Ok(r) => panic!("{path}: {} {}", r.status, r.json()),
                            Err(_) => {
                                // The server is gone: this one may or may not be durable.
                                entry.2 = Some(add);
                                break;
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        let began = Instant::now();
        std::thread::sleep(Duration::from_millis(700));
        while acked_so_far.load(std::sync::atomic::Ordering::Relaxed) < 300
            && began.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        server.kill_now();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        senders.into_iter().map(|h| h.join().unwrap()).collect()
    });
    server.restart();
    let mut acked = 0;
    for (key, (count, sum, in_flight)) in tallies.into_iter().flatten() {
        acked += count;
        let a = server.eventually(Duration::from_secs(30), "mail applied", || {
            let a = server.actor("counter", &key).json();
            (a["mailbox_depth"] == 0).then_some(a)
        });
        let (total, turns) = (
            a["state"]["total"].as_u64().unwrap(),
            a["turns"].as_u64().unwrap(),
        );
        // Every acknowledged message applied exactly once; the one in flight at most once.
        let ok = (total, turns) == (sum, count)
            || in_flight.is_some_and(|add| (total, turns) == (sum + add, count + 1));
        assert!(
            ok,
            "{key}: total {total} after {turns} turns; acknowledged {count} adding {sum}, in flight {in_flight:?}"
        );
    }
    eprintln!("killed after {acked} acknowledged messages; each applied exactly once");
    assert!(
        acked > 200,
        "the server was busy when killed ({acked} acknowledged)"
    );
}

#[test]
fn hostile_guests_are_stopped_and_the_server_keeps_serving() {
    let mut server = Server::start(&[
        "--turn-time-ms",
        "300",
        "--memory-mb",
        "32",
        "--turn-attempts",
        "2",
    ]);
    server.deploy("hostile", "hostile");
    server.deploy("counter", "counter");

    let cases = [
        ("loop", "time budget"),
        ("bomb", "memory limit"),
        ("trap", "hostile guest trapped on purpose"),
        ("recurse", "guest trapped"),
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(what, reason)| {
                let server = &server;
                s.spawn(move || {
                    let r = server.post_json(
                        &format!("/v1/actors/hostile/{what}"),
                        &json!({"do": what}),
                        &[("prefer", "wait=20")],
                    );
                    let p = r.assert_problem(500);
                    let detail = p["detail"].as_str().unwrap();
                    assert!(
                        detail.contains(reason),
                        "{what}: {detail:?} should mention {reason:?}"
                    );
                    assert!(p["request_id"].is_string());
                })
            })
            .collect();
        // Meanwhile other actors are served.
        for i in 1..=20 {
            let r = server.call("counter", "bystander", json!({"add": 1}));
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["total"], i);
        }
        for h in handles {
            h.join().unwrap();
        }
    });

    // Every hostile actor handles its next message, and the failure is a dead letter.
    for (what, _) in cases {
        let r = server.call("hostile", what, json!({"do": "ok"}));
        assert_eq!(
            r.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json(), json!({"ok": 1}));
        let a = server.actor("hostile", what).json();
        assert_eq!(a["dead_letter_count"], 1);
        assert_eq!(a["dead_letters"][0]["attempts"], 2);
        assert_eq!(a["dead_letters"][0]["body"], json!({"do": what}));
    }

    // A guest that writes to stderr on every turn keeps working, however many turns its
    // (pooled) instance serves; only the last turn's words explain a trap.
    for i in 1..=20 {
        let r = server.call(
            "hostile",
            &format!("chatty{}", i % 3),
            json!({"do": "shout"}),
        );
        assert_eq!(
            r.status,
            200,
            "turn {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = server.call("hostile", "chatty0", json!({"do": "trap"}));
    let detail = r.assert_problem(500)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("trapped on purpose"), "{detail}");
    assert!(
        !detail.contains("aaaa"),
        "earlier turns' stderr is not in it: {detail}"
    );

    // A guest error refuses the message without retry.
    let r = server.call("hostile", "refuser", json!({"do": "refuse"}));
    let p = r.assert_problem(500);
    assert!(p["detail"].as_str().unwrap().contains("refused on purpose"));
    let a = server.actor("hostile", "refuser").json();
    assert_eq!(a["dead_letters"][0]["attempts"], 1);
    assert!(
        server.is_running(),
        "the server survived every hostile guest"
    );
}

#[test]
fn bad_input_gets_problem_json_and_loses_nothing() {
    let server = Server::start(&["--max-body", "1024"]);
    server.deploy("counter", "counter");
    assert_eq!(
        server.call("counter", "keep", json!({"add": 7})).status,
        200
    );

    // Random bytes as a module.
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = server.request("PUT", "/v1/modules/junk", &[], Some(&junk));
    r.assert_problem(422);
    // A real core module, not a component.
    let core = b"\0asm\x01\0\0\0";
    server
        .request("PUT", "/v1/modules/core", &[], Some(core))
        .assert_problem(422);
    // A component with the wrong exports: an empty component.
    let empty_component = b"\0asm\x0d\0\x01\0";
    let p = server
        .request("PUT", "/v1/modules/empty", &[], Some(empty_component))
        .assert_problem(422);
    assert!(p["detail"].as_str().unwrap().contains("dwell:actor"), "{p}");
    assert_eq!(server.get("/v1/modules/junk").status, 404);

    // Malformed JSON.
    let r = server.request(
        "POST",
        "/v1/actors/counter/keep",
        &[("content-type", "application/json")],
        Some(b"{\"add\": "),
    );
    r.assert_problem(400);
    // A body over the limit.
    let big = json!({"add": 1, "pad": "x".repeat(2000)});
    server.call("counter", "keep", big).assert_problem(413);
    // Unknown module, bad key, unknown request, unknown route.
    server
        .call("nosuch", "k", json!({"add": 1}))
        .assert_problem(404);
    server
        .get("/v1/requests/00000000000000000000000000000001")
        .assert_problem(404);
    server.get("/v1/requests/not-an-id").assert_problem(404);
    server
        .get("/v1/actors/counter/never-called")
        .assert_problem(404);
    server.get("/v2/nothing").assert_problem(404);
    server
        .request(
            "POST",
            "/v1/actors/counter/keep",
            &[("prefer", "wait=soon")],
            Some(b"{}"),
        )
        .assert_problem(400);
    // A body the guest cannot decode is refused by the actor as invalid (422), not a
    // crash; the caller heard why, so nothing is dead-lettered.
    let p = server
        .call("counter", "keep", json!({"subtract": 1}))
        .assert_problem(422);
    assert!(
        p["detail"].as_str().unwrap().contains("missing field"),
        "{p}"
    );
    assert_eq!(
        server.actor("counter", "keep").json()["dead_letter_count"],
        0
    );
    // The same body as an event has nobody to tell: it is dead-lettered.
    assert_eq!(
        server
            .event("counter", "keep", json!({"subtract": 1}))
            .status,
        202
    );
    let a = server.eventually(Duration::from_secs(10), "the dead letter", || {
        let a = server.actor("counter", "keep").json();
        (a["dead_letter_count"] == 1).then_some(a)
    });
    let seq = a["dead_letters"][0]["seq"].as_u64().unwrap();
    assert_eq!(a["dead_letters"][0]["body"], json!({"subtract": 1}));
    let error = a["dead_letters"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("invalid") && error.contains("missing field"),
        "{error}"
    );

    // The dead letter can be retried: it goes back into the mailbox (and, refused the
    // same way here, is dead-lettered again).
    let r = server.request(
        "POST",
        &format!("/v1/actors/counter/keep/dead-letters/{seq}/retry"),
        &[],
        None,
    );
    assert_eq!(r.status, 202);
    let a = server.eventually(Duration::from_secs(10), "the second dead letter", || {
        let a = server.actor("counter", "keep").json();
        (a["dead_letter_count"] == 2).then_some(a)
    });
    assert_eq!(
        a["dead_letters"].as_array().unwrap().len(),
        1,
        "moved, not copied"
    );
    server
        .request(
            "POST",
            &format!("/v1/actors/counter/keep/dead-letters/{seq}/retry"),
            &[],
            None,
        )
        .assert_problem(404);

    // Nothing accepted before was harmed.
    let r = server.call("counter", "keep", json!({"add": 1}));
    assert_eq!(r.json(), json!({"total": 8}));
    let list = server.get("/v1/modules").json();
    assert_eq!(list["modules"].as_array().unwrap().len(), 1);
}

#[test]
fn sigterm_closes_the_data_file_cleanly_and_sigkill_is_repaired() {
    let mut server = Server::start(&[]);
    server.deploy("counter", "counter");
    assert_eq!(server.call("counter", "t", json!({"add": 1})).status, 200);
    assert!(server.terminate(), "SIGTERM ends the server with success");
    server.start_again();
    assert_eq!(
        server.call("counter", "t", json!({"add": 1})).json(),
        json!({"total": 2})
    );
    assert!(
        !server.log().contains("not closed cleanly"),
        "a clean stop needs no repair:\n{}",
        server.log()
    );
    server.kill();
    server.start_again();
    assert_eq!(
        server.call("counter", "t", json!({"add": 1})).json(),
        json!({"total": 3})
    );
    // redb repairs its file after a kill (PostgreSQL recovers by itself).
    if test_postgres().is_none() {
        assert!(
            server.log().contains("not closed cleanly"),
            "SIGKILL is repaired at start"
        );
    }
}

#[test]
fn overload_answers_503_with_retry_after_and_loses_nothing() {
    // Room for two messages in flight: 16 callers at once are bound to overflow it.
    let server = Server::start(&["--ingress-messages", "2"]);
    server.deploy("counter", "counter");
    let accepted = std::sync::atomic::AtomicU64::new(0);
    let refused = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..16 {
            let (server, accepted, refused) = (&server, &accepted, &refused);
            s.spawn(move || {
                for i in 0..40 {
                    let key = format!("o{}", (t + i) % 4);
                    let r = if i % 2 == 0 {
                        server.call("counter", &key, json!({"add": 1}))
                    } else {
                        server.event("counter", &key, json!({"add": 1}))
                    };
                    match r.status {
                        200 | 202 => {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        _ => refused.lock().unwrap().push(r),
                    }
                }
            });
        }
    });
    let refused = refused.into_inner().unwrap();
    assert!(!refused.is_empty(), "some calls met a full server");
    for r in &refused {
        let p = r.assert_problem(503);
        assert_eq!(
            p["type"].as_str().map(|t| t.ends_with("overloaded")),
            Some(true)
        );
        assert!(
            r.header("retry-after")
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "503 says when to come back"
        );
    }
    // Everything acknowledged is applied exactly once; nothing refused is.
    let accepted = accepted.into_inner();
    let total = server.eventually(Duration::from_secs(10), "accepted messages applied", || {
        let mut sum = 0;
        for k in 0..4 {
            let a = server.actor("counter", &format!("o{k}")).json();
            if a["mailbox_depth"] != 0 {
                return None;
            }
            sum += a["state"]["total"].as_u64().unwrap_or(0);
        }
        (sum == accepted).then_some(sum)
    });
    assert_eq!(total + refused.len() as u64, 16 * 40);
}

#[test]
fn a_restart_loads_compiled_modules_from_the_cache_instead_of_compiling() {
    let mut server = Server::start(&[]);
    let deployed = server.deploy("counter", "counter");
    let digest = deployed["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    assert_eq!(server.call("counter", "c", json!({"add": 1})).status, 200);
    let cached: Vec<String> = std::fs::read_dir(server.data.join("compiled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0].starts_with(&format!("{digest}-")) && cached[0].ends_with(".cwasm"),
        "keyed by digest and engine fingerprint: {cached:?}"
    );

    server.restart();
    let r = server.call("counter", "c", json!({"add": 1}));
    assert_eq!(r.json(), json!({"total": 2}));
    assert!(
        !server.log().contains("no cached artefact"),
        "nothing was compiled after the restart"
    );
    // Without the cache, the module is compiled again from its stored bytes.
    server.kill();
    std::fs::remove_dir_all(server.data.join("compiled")).unwrap();
    server.start_again();
    let r = server.call("counter", "c", json!({"add": 1}));
    assert_eq!(r.json(), json!({"total": 3}));
    assert!(server.log().contains("no cached artefact"));
}

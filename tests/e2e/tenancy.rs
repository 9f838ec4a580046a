//! Many tenants on one Dwell: isolation, keys, quotas, fair scheduling and secrets.
//! Long because isolation, quotas, fairness and secrets each need their own multi-tenant
//! setup.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Resp, Server};

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Create a tenant with the admin key and issue it a key.
fn tenant(server: &Server, name: &str) -> String {
    let admin = bearer(&server.admin_key);
    let r = server.post_json(
        "/v1/tenants",
        &json!({ "name": name }),
        &[("authorization", &admin)],
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["webhook_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let k = server.post_json(
        &format!("/v1/tenants/{name}/keys"),
        &json!({}),
        &[("authorization", &admin)],
    );
    assert_eq!(k.status, 201);
    k.json()["key"].as_str().unwrap().to_owned()
}

fn patch(server: &Server, name: &str, body: Value) -> Resp {
    let admin = bearer(&server.admin_key);
    let r = server.request(
        "PATCH",
        &format!("/v1/tenants/{name}"),
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r
}

fn as_key<'a>(key: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
    let mut h = vec![("authorization", bearer(key))];
    h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    h
}

fn req(server: &Server, key: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    let h = as_key(key, &[("content-type", "application/json")]);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = body.map(|b| b.to_string().into_bytes());
    server.request(method, path, &h, body.as_deref())
}

fn deploy_as(server: &Server, key: &str, name: &str, guest: &str) -> Resp {
    let auth = bearer(key);
    server.request(
        "PUT",
        &format!("/v1/modules/{name}"),
        &[("authorization", &auth)],
        Some(&crate::harness::guest_bytes(guest)),
    )
}

#[test]
fn one_tenant_cannot_see_or_touch_anothers_modules_actors_or_requests() {
    let server = Server::start(&[]);
    let a = tenant(&server, "alpha");
    let b = tenant(&server, "beta");
    assert_eq!(deploy_as(&server, &a, "counter", "counter").status, 201);
    let r = req(
        &server,
        &a,
        "POST",
        "/v1/actors/counter/shared",
        Some(json!({"add": 3})),
    );
    assert_eq!(r.json(), json!({"total": 3}));
    let request_id = r.header("dwell-request-id").unwrap();
    let digest =
        req(&server, &a, "GET", "/v1/modules/counter", None).json()["versions"][0]["digest"]
            .clone();

    // Everything B tries against A's things is a 404, exactly like things that do not exist.
    assert_eq!(
        req(&server, &b, "GET", "/v1/modules", None).json(),
        json!({"modules": []})
    );
    req(&server, &b, "GET", "/v1/modules/counter", None).assert_problem(404);
    req(
        &server,
        &b,
        "POST",
        "/v1/actors/counter/shared",
        Some(json!({"add": 1})),
    )
    .assert_problem(404);
    req(
        &server,
        &b,
        "POST",
        "/v1/actors/counter/shared/events",
        Some(json!({"add": 1})),
    )
    .assert_problem(404);
    req(&server, &b, "GET", "/v1/actors/counter/shared", None).assert_problem(404);
    req(&server, &b, "DELETE", "/v1/actors/counter/shared", None).assert_problem(404);
    req(&server, &b, "DELETE", "/v1/modules/counter", None).assert_problem(404);
    req(
        &server,
        &b,
        "GET",
        &format!("/v1/requests/{request_id}"),
        None,
    )
    .assert_problem(404);
    // B's own module of the same name is B's; A's stays as it was.
    assert_eq!(deploy_as(&server, &b, "counter", "checkin").status, 201);
    let mine = req(&server, &a, "GET", "/v1/modules/counter", None).json();
    assert_eq!(mine["versions"].as_array().unwrap().len(), 1);
    assert_eq!(mine["versions"][0]["digest"], digest);
    let r = req(
        &server,
        &a,
        "POST",
        "/v1/actors/counter/shared",
        Some(json!({"add": 1})),
    );
    assert_eq!(r.json(), json!({"total": 4}), "A's actor was not touched");
    // A's key in B's... there is no B-scoped path: the key decides the tenant. And the
    // default tenant sees none of it.
    req(
        &server,
        &server.key,
        "GET",
        "/v1/actors/counter/shared",
        None,
    )
    .assert_problem(404);
    assert_eq!(
        req(
            &server,
            &a,
            "GET",
            &format!("/v1/requests/{request_id}"),
            None
        )
        .status,
        200
    );
}

#[test]
fn keys_are_checked_revoked_at_once_and_roles_are_kept_apart() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    let admin = bearer(&server.admin_key);
    let k = server.post_json(
        "/v1/tenants/default/keys",
        &json!({}),
        &[("authorization", &admin)],
    );
    let (id, key) = (
        k.json()["id"].as_str().unwrap().to_owned(),
        k.json()["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        req(
            &server,
            &key,
            "POST",
            "/v1/actors/counter/k",
            Some(json!({"add": 1}))
        )
        .status,
        200
    );
    let r = server.request(
        "DELETE",
        &format!("/v1/tenants/default/keys/{id}"),
        &[("authorization", &admin)],
        None,
    );
    assert_eq!(r.status, 204);
    let p = req(
        &server,
        &key,
        "POST",
        "/v1/actors/counter/k",
        Some(json!({"add": 1})),
    )
    .assert_problem(401);
    assert!(!p.to_string().contains(&key), "errors never echo keys");
    // The other key still works.
    assert_eq!(
        server.call("counter", "k", json!({"add": 1})).json(),
        json!({"total": 2})
    );

    let missing = server.request("GET", "/v1/modules", &[("authorization", "")], None);
    missing.assert_problem(401);
    assert_eq!(
        missing.header("www-authenticate").as_deref(),
        Some("Bearer")
    );
    req(
        &server,
        "dw_0123456789abcdef_wrongwrongwrong",
        "GET",
        "/v1/modules",
        None,
    )
    .assert_problem(401);
    req(&server, "not even a key", "GET", "/v1/modules", None).assert_problem(401);
    // The admin key is for tenants; a tenant key is not for tenants.
    req(&server, &server.admin_key, "GET", "/v1/modules", None).assert_problem(403);
    req(&server, &server.key, "GET", "/v1/tenants", None).assert_problem(403);
    // Deleting a tenant kills its keys.
    let gamma = tenant(&server, "gamma");
    assert_eq!(req(&server, &gamma, "GET", "/v1/modules", None).status, 200);
    assert_eq!(
        server
            .request(
                "DELETE",
                "/v1/tenants/gamma",
                &[("authorization", &admin)],
                None
            )
            .status,
        204
    );
    req(&server, &gamma, "GET", "/v1/modules", None).assert_problem(401);
    let list = server
        .request("GET", "/v1/tenants", &[("authorization", &admin)], None)
        .json();
    let names: Vec<_> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("default")]);
}

#[test]
fn every_quota_answers_with_its_status_and_loses_nothing() {
    let server = Server::start(&[]);
    let q = tenant(&server, "quota");
    patch(
        &server,
        "quota",
        json!({"quotas": {
            "max_modules": 2, "max_module_bytes": 8_000_000, "max_actors": 3,
            "max_state_bytes": 10_000, "max_message_bytes": 200, "turn_time_ms": 80,
            "memory_mb": 24, "timers_per_actor": 2
        }}),
    );
    assert_eq!(deploy_as(&server, &q, "counter", "counter").status, 201);
    assert_eq!(deploy_as(&server, &q, "hostile", "hostile").status, 201);
    // Modules: a third name is over the count (429).
    deploy_as(&server, &q, "probe", "probe").assert_problem(429);
    // Actors: a fourth is refused (429); the first three keep working.
    for k in ["a1", "a2", "a3"] {
        assert_eq!(
            req(
                &server,
                &q,
                "POST",
                &format!("/v1/actors/counter/{k}"),
                Some(json!({"add": 1}))
            )
            .status,
            200
        );
    }
    let p = req(
        &server,
        &q,
        "POST",
        "/v1/actors/counter/a4",
        Some(json!({"add": 1})),
    )
    .assert_problem(429);
    assert!(p["detail"].as_str().unwrap().contains("3 actors"));
    assert_eq!(
        req(
            &server,
            &q,
            "POST",
            "/v1/actors/counter/a1",
            Some(json!({"add": 1}))
        )
        .json(),
        json!({"total": 2})
    );
    // Message size: 413.
    let big = json!({"add": 1, "pad": "x".repeat(300)});
    req(&server, &q, "POST", "/v1/actors/counter/a1", Some(big)).assert_problem(413);
    // Module size: raise the count, lower the size: 413.
    patch(
        &server,
        "quota",
        json!({"quotas": {"max_modules": 10, "max_module_bytes": 1000}}),
    );
    deploy_as(&server, &q, "probe", "probe").assert_problem(413);
    patch(
        &server,
        "quota",
        json!({"quotas": {"max_module_bytes": 8_000_000}}),
    );
    assert_eq!(deploy_as(&server, &q, "probe", "probe").status, 201);
    // State size, time and memory per turn: the turn fails with the reason (500), the
    // actor goes on.
    patch(&server, "quota", json!({"quotas": {"max_actors": 100}}));
    let wait = [("prefer", "wait=20")];
    let call = |key: &str, body: Value| {
        let h = as_key(&q, &wait);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        server.post_json(&format!("/v1/actors/hostile/{key}"), &body, &h)
    };
    let p = call("s", json!({"do": "huge", "bytes": 20_000})).assert_problem(500);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("limit of 10000 bytes"),
        "{p}"
    );
    let p = call("t", json!({"do": "loop"})).assert_problem(500);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("time budget of 80 ms"),
        "{p}"
    );
    let p = call("m", json!({"do": "bomb"})).assert_problem(500);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("memory limit of 24 MiB"),
        "{p}"
    );
    assert_eq!(call("s", json!({"do": "ok"})).json(), json!({"ok": 1}));
    // Timers per actor: the third is refused to the guest.
    for n in ["t1", "t2"] {
        let r = req(
            &server,
            &q,
            "POST",
            "/v1/actors/probe/tm",
            Some(json!({"op": "set_timer", "name": n, "after_ms": 60000})),
        );
        assert_eq!(r.json(), json!({"ok": true}));
    }
    let r = req(
        &server,
        &q,
        "POST",
        "/v1/actors/probe/tm",
        Some(json!({"op": "set_timer", "name": "t3", "after_ms": 60000})),
    );
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("at most 2 pending timers"),
        "{}",
        r.json()
    );
    assert_eq!(
        req(&server, &q, "GET", "/v1/actors/probe/tm", None).json()["timers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Request rate: 429 with Retry-After once the burst is spent; nothing lost.
    patch(
        &server,
        "quota",
        json!({"quotas": {"requests_per_second": 2, "burst": 5}}),
    );
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let r = req(
            &server,
            &q,
            "POST",
            "/v1/actors/counter/a2/events",
            Some(json!({"add": 1})),
        );
        if r.status == 429 {
            r.assert_problem(429);
            retry_after = r.header("retry-after");
        }
        statuses.push(r.status);
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        (5..=7).contains(&accepted),
        "burst of 5 at 2/s: {statuses:?}"
    );
    assert!(statuses.contains(&429));
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    patch(
        &server,
        "quota",
        json!({"quotas": {"requests_per_second": 0}}),
    );
    server.eventually(Duration::from_secs(5), "accepted events applied", || {
        let a = req(&server, &q, "GET", "/v1/actors/counter/a2", None).json();
        (a["mailbox_depth"] == 0).then_some(a)
    });
    let a = req(&server, &q, "GET", "/v1/actors/counter/a2", None).json();
    assert_eq!(
        a["state"],
        json!({"total": 1 + accepted}),
        "every accepted event applied once"
    );
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn median_p99(server: &Server, key: &str) -> Duration {
    let mut rounds: Vec<Duration> = (0..3)
        .map(|_| p99(sequential_calls(server, key, 300)))
        .collect();
    rounds.sort();
    rounds[1]
}

fn sequential_calls(server: &Server, key: &str, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            let r = req(
                server,
                key,
                "POST",
                &format!("/v1/actors/counter/b{}", i % 4),
                Some(json!({"add": 1})),
            );
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            t.elapsed()
        })
        .collect()
}

#[test]
fn a_noisy_tenant_does_not_starve_a_quiet_one() {
    let server = Server::start(&[]);
    let noisy = tenant(&server, "noisy");
    let quiet = tenant(&server, "quiet");
    patch(&server, "noisy", json!({"quotas": {"turn_time_ms": 200}}));
    assert_eq!(deploy_as(&server, &noisy, "hostile", "hostile").status, 201);
    assert_eq!(deploy_as(&server, &quiet, "counter", "counter").status, 201);
    sequential_calls(&server, &quiet, 50); // warm up
    // The median of three p99s: one disk stall on this shared VM must not decide.
    let idle = median_p99(&server, &quiet);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let noisy_p99 = std::thread::scope(|s| {
        // A floods 4 actors with turns that burn their whole time budget.
        for t in 0..4 {
            let (server, noisy, stop) = (&server, &noisy, &stop);
            s.spawn(move || {
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 2000 {
                    let r = req(
                        server,
                        noisy,
                        "POST",
                        &format!("/v1/actors/hostile/n{t}/events"),
                        Some(json!({"do": "loop"})),
                    );
                    assert_eq!(r.status, 202);
                    sent += 1;
                    if sent > 40 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let busy = req(&server, &noisy, "GET", "/v1/actors/hostile/n0", None).json();
        assert!(
            busy["mailbox_depth"].as_u64().unwrap() > 5,
            "the noisy tenant is really busy: {busy}"
        );
        let under_load = median_p99(&server, &quiet);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        under_load
    });
    eprintln!("quiet tenant sync call p99: idle {idle:?}, next to a noisy tenant {noisy_p99:?}");
    assert!(
        noisy_p99 <= idle * 5,
        "quiet tenant's p99 went from {idle:?} to {noisy_p99:?} (more than 5x)"
    );
}

#[test]
fn a_noisy_tenant_whose_callback_receivers_hang_does_not_slow_a_quiet_one() {
    let hanging = crate::fake::FakeService::start(|_, _| {
        std::thread::sleep(Duration::from_secs(30));
        Some((200, vec![], "{}".into()))
    });
    let server = Server::start(&["--allow-private-net", "--allow-http", &hanging.host_port()]);
    let noisy = tenant(&server, "noisy");
    let quiet = tenant(&server, "quiet");
    assert_eq!(deploy_as(&server, &noisy, "probe", "probe").status, 201);
    assert_eq!(deploy_as(&server, &quiet, "counter", "counter").status, 201);
    sequential_calls(&server, &quiet, 50); // warm up
    let idle = median_p99(&server, &quiet);
    // 200 requests whose callbacks go to a receiver that never answers in time.
    let callback = format!("{}/cb", hanging.url);
    for i in 0..200 {
        let r = server.request(
            "POST",
            &format!("/v1/actors/probe/h{}", i % 20),
            &[
                ("authorization", &bearer(&noisy)),
                ("content-type", "application/json"),
                ("prefer", "respond-async"),
                ("callback-url", &callback),
            ],
            Some(br#"{"op": "echo", "value": 1}"#),
        );
        assert_eq!(r.status, 202);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        hanging.count() >= 4,
        "the receiver is really hanging on deliveries"
    );
    let under_load = median_p99(&server, &quiet);
    eprintln!(
        "quiet tenant sync call p99: idle {idle:?}, next to hanging callbacks {under_load:?}"
    );
    assert!(
        under_load <= idle * 5,
        "quiet tenant's p99 went from {idle:?} to {under_load:?} (more than 5x)"
    );
}

#[test]
fn keys_and_secrets_stay_out_of_logs_responses_and_the_data_file() {
    let admin_key = "admin-key-from-env-7f3c9d2e1b5a4f60";
    let mut server = Server::start_with_env(&[], &[("DWELL_ADMIN_KEY", admin_key)]);
    assert!(
        !server.data.join("admin.key").exists(),
        "a given admin key is not written"
    );
    let first_start = server.stdout.lock().unwrap().join("\n");
    assert!(
        first_start.contains(&server.key),
        "the generated tenant key is shown once"
    );
    assert!(
        !first_start.contains(admin_key),
        "a given admin key is never printed"
    );

    let admin = bearer(admin_key);
    let created = server.post_json(
        "/v1/tenants",
        &json!({"name": "secretive"}),
        &[("authorization", &admin)],
    );
    let secret = created.json()["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = server
        .post_json(
            "/v1/tenants/secretive/keys",
            &json!({}),
            &[("authorization", &admin)],
        )
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    server.deploy("counter", "counter");
    server.call("counter", "c", json!({"add": 1}));
    req(
        &server,
        "dw_0123456789abcdef_guess",
        "GET",
        "/v1/modules",
        None,
    )
    .assert_problem(401);

    // GET responses carry no keys or secrets.
    let listing = server.request("GET", "/v1/tenants", &[("authorization", &admin)], None);
    let one = server.request(
        "GET",
        "/v1/tenants/secretive",
        &[("authorization", &admin)],
        None,
    );
    for body in [
        String::from_utf8_lossy(&listing.body),
        String::from_utf8_lossy(&one.body),
    ] {
        for s in [
            admin_key,
            secret.as_str(),
            key.as_str(),
            server.key.as_str(),
        ] {
            assert!(!body.contains(s), "a GET response leaked a secret");
        }
    }
    // Restart: nothing is printed again.
    let before = server.stdout.lock().unwrap().len();
    server.restart();
    let again = server.stdout.lock().unwrap()[before..].join("\n");
    assert!(
        !again.contains(&server.key) && !again.contains(admin_key),
        "{again}"
    );
    assert_eq!(
        server.call("counter", "c", json!({"add": 1})).json(),
        json!({"total": 2})
    );
    server.kill();

    let log = server.log();
    for s in [
        admin_key,
        secret.as_str(),
        key.as_str(),
        server.key.as_str(),
    ] {
        assert!(!log.contains(s), "the log leaked a secret");
    }
    // At rest, keys are hashes: the store holds the SHA-256, never the key.
    let file = server.data_at_rest();
    let contains = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    for k in [key.as_str(), server.key.as_str(), admin_key] {
        assert!(!contains(k.as_bytes()), "a key is stored in clear");
    }
    use sha2::Digest as _;
    assert!(
        contains(&sha2::Sha256::digest(key.as_bytes())),
        "the key's hash is stored"
    );
}

/// One tenant rewriting large states every turn (4 MB is the default limit; 24 MB with
/// the limits raised) must not slow another tenant's small turns: the writer's time is
/// shared (large states are written in slices between other tenants' commits).
#[test]
fn a_noisy_tenant_with_large_states_does_not_slow_a_quiet_one() {
    for (mib, flags) in [
        (4u64, vec![]),
        (24, vec!["--max-state", "32MiB", "--memory", "256MiB"]),
    ] {
        let server = Server::start(&flags);
        let noisy = tenant(&server, "noisy");
        let quiet = tenant(&server, "quiet");
        patch(&server, "noisy", json!({"quotas": {"turn_time_ms": 5000}}));
        assert_eq!(deploy_as(&server, &noisy, "hostile", "hostile").status, 201);
        assert_eq!(deploy_as(&server, &quiet, "counter", "counter").status, 201);
        // The ballast, minus room for the rest of the state.
        let bytes = (mib << 20) - (64 << 10);
        for t in 0..4 {
            // Waiting up to a minute: a slow store (PostgreSQL under load) may take
            // longer than the default wait to write the first large state.
            let h = as_key(
                &noisy,
                &[("content-type", "application/json"), ("prefer", "wait=60")],
            );
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = server.request(
                "POST",
                &format!("/v1/actors/hostile/big{t}"),
                &h,
                Some(json!({"do": "huge", "bytes": bytes}).to_string().as_bytes()),
            );
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        sequential_calls(&server, &quiet, 50); // warm up
        let idle = median_p99(&server, &quiet);

        // Turns the noisy actors have taken so far: each wrote its whole state.
        let handled = || -> u64 {
            (0..4)
                .map(|t| {
                    let r = req(
                        &server,
                        &noisy,
                        "GET",
                        &format!("/v1/actors/hostile/big{t}"),
                        None,
                    );
                    r.json()["state"]["handled"].as_u64().unwrap()
                })
                .sum()
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (under_load, rewrites) = std::thread::scope(|s| {
            // Four actors whose every turn writes their whole large state again (a call
            // is a turn of its own, so every call is a write of the whole state).
            let writers: Vec<_> = (0..4)
                .map(|t| {
                    let (server, noisy, stop) = (&server, &noisy, &stop);
                    s.spawn(move || {
                        let mut n = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 10_000 {
                            let r = req(
                                server,
                                noisy,
                                "POST",
                                &format!("/v1/actors/hostile/big{t}"),
                                Some(json!({"do": "rewrite"})),
                            );
                            // A rewrite slower than the call's wait (a 24 MB state on
                            // PostgreSQL under load) is answered 202 and finishes later.
                            assert!(
                                r.status == 200 || r.status == 202,
                                "{}",
                                String::from_utf8_lossy(&r.body)
                            );
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(500));
            let before = handled();
            let under_load = median_p99(&server, &quiet);
            let rewrites = handled() - before;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for w in writers {
                w.join().unwrap();
            }
            (under_load, rewrites)
        });
        eprintln!(
            "quiet tenant sync call p99: idle {idle:?}, next to {rewrites} rewrites of \
             {mib} MB states {under_load:?}"
        );
        assert!(
            rewrites >= if mib > 4 { 3 } else { 8 },
            "the noisy tenant really rewrote its large states: {rewrites}"
        );
        let state = req(&server, &noisy, "GET", "/v1/actors/hostile/big0", None);
        assert_eq!(state.status, 200);
        assert!(
            state.body.len() > (mib << 20) as usize - (64 << 10),
            "the large state is still whole: {} bytes",
            state.body.len()
        );
        assert!(
            under_load <= idle * 5,
            "{mib} MB states: quiet tenant's p99 went from {idle:?} to {under_load:?} (more than 5x)"
        );
    }
}

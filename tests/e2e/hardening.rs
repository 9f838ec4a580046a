//! Regressions of the defects found by attacking Dwell as a hostile tenant and a careless
//! operator would (the hardening issue): each test shows one of them stays fixed.
//! Long because it holds one regression test per defect, fifteen of them.

use std::time::Duration;

use serde_json::json;

use crate::fake::FakeService;
use crate::harness::{Server, test_postgres};

#[test]
fn guest_logs_cannot_forge_server_lines_or_flood_the_log() {
    let server = Server::start(&[]);
    server.deploy("hostile", "hostile");
    assert_eq!(
        server
            .call("hostile", "liar", json!({"do": "forge"}))
            .status,
        200
    );
    let log = server.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("INFO dwell: FORGED") && !l.contains("guest")),
        "a guest's newline started a line of its own:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("FORGED"))
        .expect("the guest's line is logged");
    assert!(line.contains("innocent\\n2026"), "escaped: {line}");
    assert!(
        line.contains("hostile/liar") && line.contains("default"),
        "tagged: {line}"
    );

    // 20 turns that each try to log 1,000 lines of 1 KiB (20 MB): a turn writes at most
    // its per-turn share, the tenant at most its rate, and the rest is counted.
    let before = server.log().len();
    for i in 0..20 {
        let r = server.call("hostile", &format!("loud{}", i % 4), json!({"do": "flood"}));
        assert_eq!(r.status, 200);
    }
    let log = server.log();
    let grown = log.len() - before;
    assert!(grown < 600 << 10, "the log grew by {grown} bytes");
    assert!(
        log.contains("guest log lines dropped"),
        "the drop is reported"
    );
}

#[test]
fn a_callback_receiver_answering_200_with_a_large_body_is_a_success() {
    let receiver = FakeService::start(|_, _| Some((200, vec![], "x".repeat(100_000))));
    let server = Server::start(&["--allow-private-net", "--allow-http", &receiver.host_port()]);
    server.deploy("probe", "probe");
    let r = server.post_json(
        "/v1/actors/probe/big",
        &json!({"op": "echo", "value": 1}),
        &[
            ("prefer", "respond-async"),
            ("callback-url", &format!("{}/cb", receiver.url)),
        ],
    );
    let location = r.header("location").unwrap();
    let rec = server.eventually(Duration::from_secs(20), "the callback's outcome", || {
        let rec = server.get(&location).json();
        let status = rec["callback"]["status"].as_str()?;
        (status != "pending" && status != "waiting_for_result").then_some(rec)
    });
    assert_eq!(rec["callback"]["status"], "delivered", "{rec}");
    assert_eq!(rec["callback"]["attempts"], 1, "{rec}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.count(), 1, "delivered once, not retried");
}

#[test]
fn names_that_are_only_dots_are_refused_everywhere() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    for path in [
        "/v1/actors/counter/..",
        "/v1/actors/counter/%2e%2e",
        "/v1/actors/counter/.",
        "/v1/actors/%2E/k",
    ] {
        let r = server.post_json(path, &json!({"add": 1}), &[]);
        let p = r.assert_problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("dots"),
            "{path}: {p}"
        );
    }
    let wasm = std::fs::read(crate::harness::guest("counter")).unwrap();
    server
        .request("PUT", "/v1/modules/..", &[], Some(&wasm))
        .assert_problem(400);
    let admin = format!("Bearer {}", server.admin_key);
    let r = server.request(
        "POST",
        "/v1/tenants",
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        Some(br#"{"name": ".."}"#),
    );
    r.assert_problem(400);
}

#[test]
fn a_forged_reply_handle_is_refused_and_creates_no_actor() {
    let server = Server::start(&[]);
    server.deploy("hostile", "hostile");
    server.deploy("probe", "probe");
    let forged = format!("ask:probe/{}/c", "bad key!".repeat(100));
    for handle in [forged.as_str(), "ask:probe/../c", "ask:nosuch/k/c"] {
        let r = server.call(
            "hostile",
            "forger",
            json!({"do": "forge_reply", "handle": handle}),
        );
        if handle.starts_with("ask:nosuch") {
            // A valid name of a module that does not exist: accepted as a reply, and
            // delivering it finds no module (nothing is created).
            continue;
        }
        let p = r.assert_problem(500);
        assert!(
            p["detail"].as_str().unwrap().contains("not a reply handle"),
            "{p}"
        );
    }
    let admin = format!("Bearer {}", server.admin_key);
    let t = server
        .request(
            "GET",
            "/v1/tenants/default",
            &[("authorization", &admin)],
            None,
        )
        .json();
    assert_eq!(t["actors"], 1, "only the forger exists: {t}");
}

#[test]
fn a_deleted_tenants_data_work_and_callbacks_are_gone_and_its_name_starts_empty() {
    let receiver = FakeService::start(|_, _| Some((503, vec![], "{}".into())));
    let server = Server::start(&[
        "--allow-private-net",
        "--allow-http",
        &receiver.host_port(),
        "--callback-attempts",
        "50",
    ]);
    let admin = format!("Bearer {}", server.admin_key);
    let key = server.new_tenant("doomed");
    let auth = format!("Bearer {key}");
    let as_doomed = |method: &str, path: &str, body: Option<serde_json::Value>| {
        let mut h = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        h.push(("prefer", "wait=10"));
        let body = body.map(|b| b.to_string());
        server.request(method, path, &h, body.as_deref().map(str::as_bytes))
    };
    for (name, guest) in [("counter", "counter"), ("probe", "probe")] {
        let r = server.request(
            "PUT",
            &format!("/v1/modules/{name}"),
            &[("authorization", &auth)],
            Some(&std::fs::read(crate::harness::guest(guest)).unwrap()),
        );
        assert_eq!(r.status, 201);
    }
    let r = as_doomed("POST", "/v1/actors/counter/x", Some(json!({"add": 1733})));
    assert_eq!(r.json(), json!({"total": 1733}));
    let old_request = r.header("dwell-request-id").unwrap();
    // A timer due in two seconds, and a callback its receiver keeps refusing.
    let r = as_doomed(
        "POST",
        "/v1/actors/probe/t",
        Some(json!({"op": "set_timer", "name": "later", "after_ms": 2000})),
    );
    assert_eq!(r.json(), json!({"ok": true}));
    let r = server.request(
        "POST",
        "/v1/actors/probe/cb",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("prefer", "respond-async"),
            ("callback-url", &format!("{}/cb", receiver.url)),
        ],
        Some(br#"{"op": "echo", "value": 1}"#),
    );
    assert_eq!(r.status, 202);
    server.eventually(
        Duration::from_secs(10),
        "a refused callback attempt",
        || (receiver.count() >= 1).then_some(()),
    );

    let r = server.request(
        "DELETE",
        "/v1/tenants/doomed",
        &[("authorization", &admin)],
        None,
    );
    assert_eq!(r.status, 204);
    let attempts_at_delete = receiver.count();
    // The old key is dead at once.
    assert_eq!(as_doomed("GET", "/v1/actors/counter/x", None).status, 401);

    // A new tenant of the same name starts empty.
    let key = server.new_tenant("doomed");
    let auth2 = format!("Bearer {key}");
    let as_new = |method: &str, path: &str| {
        server.request(method, path, &[("authorization", auth2.as_str())], None)
    };
    let t = server
        .request(
            "GET",
            "/v1/tenants/doomed",
            &[("authorization", &admin)],
            None,
        )
        .json();
    assert_eq!(t["actors"], 0, "{t}");
    assert_eq!(as_new("GET", "/v1/modules").json()["modules"], json!([]));
    as_new("GET", "/v1/actors/counter/x").assert_problem(404);
    as_new("GET", &format!("/v1/requests/{old_request}")).assert_problem(404);
    let r = server.request(
        "PUT",
        "/v1/modules/probe",
        &[("authorization", &auth2)],
        Some(&std::fs::read(crate::harness::guest("probe")).unwrap()),
    );
    assert_eq!(r.status, 201);

    // The old timer's time passes: nothing of the old tenant runs, nothing is delivered.
    std::thread::sleep(Duration::from_millis(3500));
    as_new("GET", "/v1/actors/probe/t").assert_problem(404);
    assert!(
        receiver.count() <= attempts_at_delete + 1,
        "callbacks went on after the deletion: {} then {}",
        attempts_at_delete,
        receiver.count()
    );
    // The old data is purged in the background.
    server.eventually(Duration::from_secs(10), "the purge", || {
        server.log().contains("deleted tenant purged").then_some(())
    });
    let log = server.log();
    assert!(
        !log.contains("turn failed") && !log.contains("later"),
        "no turn of the old tenant ran:\n{log}"
    );
}

#[test]
fn the_data_directory_is_private_and_tenant_secrets_are_sealed_at_rest() {
    use std::os::unix::fs::PermissionsExt;
    let receiver = FakeService::start(|_, _| Some((200, vec![], "{}".into())));
    let mut server = Server::start(&["--allow-private-net", "--allow-http", &receiver.host_port()]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data), 0o700);
    if test_postgres().is_none() {
        assert_eq!(mode(&server.data.join("dwell.redb")), 0o600);
    }
    assert_eq!(mode(&server.data.join("secrets.key")), 0o600);

    let admin = format!("Bearer {}", server.admin_key);
    let r = server.post_json(
        "/v1/tenants",
        &json!({"name": "vault"}),
        &[("authorization", &admin)],
    );
    let secret = r.json()["webhook_secret"].as_str().unwrap().to_owned();
    let key = server
        .post_json(
            "/v1/tenants/vault/keys",
            &json!({}),
            &[("authorization", &admin)],
        )
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    server.restart();
    let file = server.data_at_rest();
    let needle = secret.trim_start_matches("whsec_").as_bytes();
    assert!(
        !file.windows(needle.len()).any(|w| w == needle),
        "the webhook secret is in the store in plain text"
    );
    // Unsealed again after the restart: the tenant's callbacks verify with its secret.
    let auth = format!("Bearer {key}");
    let r = server.request(
        "PUT",
        "/v1/modules/probe",
        &[("authorization", &auth)],
        Some(&std::fs::read(crate::harness::guest("probe")).unwrap()),
    );
    assert_eq!(r.status, 201);
    let r = server.request(
        "POST",
        "/v1/actors/probe/v",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("prefer", "respond-async"),
            ("callback-url", &format!("{}/cb", receiver.url)),
        ],
        Some(br#"{"op": "echo", "value": 1}"#),
    );
    assert_eq!(r.status, 202);
    server.eventually(Duration::from_secs(10), "the callback", || {
        (receiver.count() >= 1).then_some(())
    });
    assert!(crate::processes::verify_signature(
        &receiver.received()[0],
        &secret
    ));
}

#[test]
fn a_tenant_whose_callbacks_hang_does_not_delay_another_tenants_callbacks() {
    let hanging = FakeService::start(|_, _| {
        std::thread::sleep(Duration::from_secs(20));
        Some((200, vec![], "{}".into()))
    });
    let quick = FakeService::start(|_, _| Some((200, vec![], "{}".into())));
    let allow = format!("{},{}", hanging.host_port(), quick.host_port());
    let server = Server::start(&["--allow-private-net", "--allow-http", &allow]);
    server.deploy("probe", "probe");
    // The default tenant: 48 requests whose callbacks go to a receiver that hangs.
    for i in 0..48 {
        let r = server.request(
            "POST",
            &format!("/v1/actors/probe/h{i}"),
            &[
                ("content-type", "application/json"),
                ("prefer", "respond-async"),
                ("callback-url", &format!("{}/cb", hanging.url)),
            ],
            Some(br#"{"op": "echo", "value": 1}"#),
        );
        assert_eq!(r.status, 202);
    }
    server.eventually(Duration::from_secs(10), "the hanging deliveries", || {
        (hanging.count() >= 8).then_some(())
    });
    // Another tenant's callback goes out at once.
    let key = server.new_tenant("calm");
    let auth = format!("Bearer {key}");
    let r = server.request(
        "PUT",
        "/v1/modules/probe",
        &[("authorization", &auth)],
        Some(&std::fs::read(crate::harness::guest("probe")).unwrap()),
    );
    assert_eq!(r.status, 201);
    let started = std::time::Instant::now();
    let r = server.request(
        "POST",
        "/v1/actors/probe/q",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("prefer", "respond-async"),
            ("callback-url", &format!("{}/cb", quick.url)),
        ],
        Some(br#"{"op": "echo", "value": 2}"#),
    );
    assert_eq!(r.status, 202);
    server.eventually(
        Duration::from_secs(15),
        "the other tenant's callback",
        || (quick.count() >= 1).then_some(()),
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the other tenant's callback waited {took:?} behind the hanging ones"
    );
    assert!(
        hanging.count() <= 12,
        "the hanging tenant held more than its share: {}",
        hanging.count()
    );
}

#[test]
fn slow_request_bodies_time_out_and_one_tenant_holds_few_connections_with_them() {
    use std::io::{Read, Write};
    let server = Server::start(&["--body-timeout", "2s", "--max-body-reads", "4"]);
    server.deploy("counter", "counter");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let open = || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(
            s,
            "POST /v1/actors/counter/slow HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
            server.key
        )
        .unwrap();
        s
    };
    let started = std::time::Instant::now();
    let mut trickling: Vec<_> = (0..4).map(|_| open()).collect();
    std::thread::sleep(Duration::from_millis(300));
    // A fifth body of the same tenant is refused at once.
    let mut fifth = open();
    let mut answer = String::new();
    let _ = fifth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // The others, trickling a byte a second, are cut off after the body timeout.
    for s in &mut trickling {
        let _ = s.write_all(b" ");
    }
    for mut s in trickling {
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body-timeout"), "{answer}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "cut off after {took:?}");
    // Served as usual afterwards.
    assert_eq!(
        server.call("counter", "slow", json!({"add": 1})).status,
        200
    );
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb << 10
}

/// `wasm` with a custom section appended: the same component under another digest.
fn variant(wasm: &[u8], n: u8) -> Vec<u8> {
    let name = b"dwell-test";
    let payload = [name.len() as u8]
        .iter()
        .chain(name)
        .chain(&[n])
        .copied()
        .collect::<Vec<u8>>();
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push(payload.len() as u8);
    out.extend(payload);
    out
}

#[test]
fn idle_warm_instances_are_bounded_in_memory() {
    let server = Server::start(&[]);
    let wasm = std::fs::read(crate::harness::guest("hostile")).unwrap();
    // Twelve module versions, each touching 40 MiB in one turn and then idle.
    for n in 0..12u8 {
        let r = server.request(
            "PUT",
            &format!("/v1/modules/big{n}"),
            &[],
            Some(&variant(&wasm, n)),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let before = rss(server.pid());
    for n in 0..12u8 {
        let r = server.call(
            &format!("big{n}"),
            "a",
            json!({"do": "touch", "bytes": 40 << 20}),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss(server.pid()).saturating_sub(before);
    // Kept idle they would hold 12 × 40 MiB; the pool keeps at most 64 MiB per tenant.
    assert!(
        grown < 200 << 20,
        "idle instances hold {} MiB more",
        grown >> 20
    );
    // And they still serve (instantiated afresh where dropped).
    for n in 0..12u8 {
        let r = server.call(&format!("big{n}"), "a", json!({"do": "ok"}));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn a_full_disk_answers_507_reports_not_ready_and_recovers_without_a_restart() {
    if test_postgres().is_some() {
        // The disk filled here holds the redb file; PostgreSQL's own disk is its
        // server's (its "disk full" maps to the same 507: see the engine's fault tests).
        eprintln!("skipped on PostgreSQL: the data directory's disk does not hold the store");
        return;
    }
    // A small filesystem of our own for the data directory (the tests run as root).
    let mount = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(mount.path())
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mounting a tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_owned());
    let data = mount.path().join("data");
    let mut server = Server::start_in(&data, &[]);
    server.deploy("counter", "counter");
    assert_eq!(server.call("counter", "c", json!({"add": 1})).status, 200);

    // Fill the disk.
    let filler = mount.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut full = None;
    for i in 0..200 {
        let r = server.call(
            "counter",
            &format!("k{i}"),
            json!({"add": 1, "pad": "x".repeat(100)}),
        );
        if r.status != 200 {
            full = Some(r);
            break;
        }
    }
    let r = full.expect("a write failed once the disk was full");
    let p = r.assert_problem(507);
    assert!(
        p["type"].as_str().unwrap().ends_with("/storage-full"),
        "{p}"
    );
    let ready = server.get("/readyz");
    ready.assert_problem(503);
    assert!(
        !server.log().contains("corrupt record"),
        "a full disk is not called corruption"
    );

    // Room again: writes succeed without a restart, and nothing acknowledged was lost.
    std::fs::remove_file(&filler).unwrap();
    let r = server.eventually(Duration::from_secs(15), "writes to succeed again", || {
        let r = server.call("counter", "c", json!({"add": 1}));
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.json(), json!({"total": 2}));
    assert_eq!(server.get("/readyz").status, 200);
    assert!(server.is_running());
    server.kill();
}

/// Send `raw` on a new connection; the whole answer, until the server closes.
fn raw_exchange(server: &Server, raw: &[u8]) -> String {
    use std::io::{Read, Write};
    let addr = server.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer and close before it has read everything (a head too large).
    let _ = conn.write_all(raw);
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Defect 13: requests the HTTP parser refuses before any handler runs were answered with
/// an empty 400 or 431.
#[test]
fn requests_the_http_parser_refuses_get_problem_json() {
    let server = Server::start(&[]);
    let key = format!("Bearer {}", server.key);
    let headers: String = (0..100).map(|i| format!("X-H{i}: y\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a raw 0xFF in the path",
            b"GET /v1/\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a space in the path",
            b"GET /v1/a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a 100 KB path",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            400,
        ),
        (
            "101 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes(),
            431,
        ),
        (
            "Content-Length with Transfer-Encoding",
            format!(
                "POST /v1/actors/counter/a HTTP/1.1\r\nHost: x\r\nAuthorization: {key}\r\n\
                 Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
            )
            .into_bytes(),
            400,
        ),
        (
            "two Content-Lengths",
            format!(
                "POST /v1/actors/counter/a HTTP/1.1\r\nHost: x\r\nAuthorization: {key}\r\n\
                 Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
            )
            .into_bytes(),
            400,
        ),
    ];
    for (what, raw, status) in cases {
        let answer = raw_exchange(&server, &raw);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: no answer: {answer:?}"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{what}: {head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what}: body {body:?} is not JSON: {e}"));
        assert_eq!(problem["status"], status, "{what}: {problem}");
        assert!(problem["detail"].as_str().unwrap().len() > 20, "{what}");
    }
    // A pipelined good request before a broken one is answered as usual, then the problem.
    let answer = raw_exchange(
        &server,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/a b HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json"),
        "{answer}"
    );
    // And the server still serves.
    let health = server.request("GET", "/healthz", &[], None);
    assert_eq!(health.status, 200);
}

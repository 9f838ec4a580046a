//! Live upgrades through the real binary: check-in actors waiting for their boarding
//! pass move from version 1 to a version 2 that keeps the pass differently and answers
//! in another shape; a version 3 that traps is caught by the dry run; canaries roll
//! themselves back or go on; a SIGKILL in the middle of an apply leaves no actor
//! half-moved; another tenant sees none of it; the CLI and the console show it all.
//! Long because each scenario drives a whole upgrade through the real binary.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::{Resp, Server};

const LONG: Duration = Duration::from_secs(60);

fn body(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Register booking `key`; check-in opens in an hour, so it waits.
fn register(server: &Server, key: &str) {
    let r = server.event(
        "checkin",
        key,
        json!({
            "type": "register",
            "booking": key,
            "passenger": "Ada",
            "checkin_opens_at_ms": now_ms() + 3_600_000,
            "boarding_pass_url": "http://127.0.0.1:9/pass",
        }),
    );
    assert_eq!(r.status, 202, "{}", body(&r));
}

/// A `check_in` call answered later: its `Location`.
fn check_in(server: &Server, key: &str) -> String {
    let r = server.post_json(
        &format!("/v1/actors/checkin/{key}"),
        &json!({"type": "check_in"}),
        &[("prefer", "respond-async")],
    );
    assert_eq!(r.status, 202, "{}", body(&r));
    r.header("location").expect("Location")
}

fn settled(server: &Server, location: &str) -> Value {
    server.eventually(LONG, "the request to settle", || {
        let r = server.request("GET", location, &[("prefer", "wait=5")], None);
        assert_eq!(r.status, 200, "GET {location}: {}", body(&r));
        let v = r.json();
        (v["status"] != "pending").then_some(v)
    })
}

fn actor(server: &Server, key: &str) -> Value {
    let r = server.actor("checkin", key);
    assert_eq!(r.status, 200, "{}", body(&r));
    r.json()
}

/// Start a run; answers the run.
fn upgrade(server: &Server, plan: Value) -> Value {
    let r = server.post_json("/v1/modules/checkin/upgrades", &plan, &[]);
    assert_eq!(r.status, 201, "{}", body(&r));
    let run = r.json();
    assert_eq!(
        r.header("location").as_deref(),
        Some(
            format!(
                "/v1/modules/checkin/upgrades/{}",
                run["id"].as_str().unwrap()
            )
            .as_str()
        )
    );
    run
}

fn run(server: &Server, id: &str) -> Value {
    let r = server.get(&format!("/v1/modules/checkin/upgrades/{id}"));
    assert_eq!(r.status, 200, "{}", body(&r));
    r.json()
}

/// Poll run `id` until its status is `status`.
fn run_reaches(server: &Server, id: &str, status: &str) -> Value {
    server.eventually(LONG, &format!("run {id} to be {status}"), || {
        let r = run(server, id);
        (r["status"] == status).then_some(r)
    })
}

/// Deploy `guest` as module `checkin`, which becomes version `version`.
fn deploy(server: &Server, guest: &str, version: u64) {
    let v = server.deploy("checkin", guest);
    assert_eq!(v["version"], version, "{v}");
}

#[test]
fn waiting_checkins_move_to_v2_migrated_and_complete_with_its_reply_others_stay_on_v1() {
    let server = Server::start(&[]);
    deploy(&server, "checkin", 1);
    let keys = ["UP1", "UP2", "UP3"];
    let mut waiting = Vec::new();
    for k in keys {
        register(&server, k);
        waiting.push(check_in(&server, k));
    }
    deploy(&server, "checkin_v2", 2);
    // New actors start on the latest version; the waiting ones stay pinned.
    assert_eq!(actor(&server, "UP1")["version"], 1);

    let planned = upgrade(
        &server,
        json!({"from": 1, "to": 2, "select": {"keys": ["UP1", "UP2"]}, "mode": "apply"}),
    );
    let id = planned["id"].as_str().unwrap().to_owned();
    assert_eq!(planned["report"]["selected"], 2, "{planned:#}");
    assert_eq!(planned["report"]["problems"], 0, "{planned:#}");
    assert!(
        planned["report"]["replayed_turns"].as_u64().unwrap() >= 4,
        "{planned:#}"
    );
    let one = &planned["report"]["actors"][0];
    assert_eq!(one["migrate"], "migrated", "{planned:#}");
    let done = run_reaches(&server, &id, "completed");
    assert_eq!(done["report"]["moved"], 2, "{done:#}");

    for k in ["UP1", "UP2"] {
        let a = actor(&server, k);
        assert_eq!(a["version"], 2, "{a:#}");
        // `migrate` converted the state: the pass has a new field, waiting callers kept.
        let s = &a["state"];
        assert_eq!(s["migrated_from"], 1, "{a:#}");
        assert!(
            s.get("boarding").is_some() && s.get("pass").is_none(),
            "{a:#}"
        );
        assert_eq!(s["waiting"].as_array().unwrap().len(), 1, "{a:#}");
    }
    let left = actor(&server, "UP3");
    assert_eq!(left["version"], 1, "not selected: {left:#}");
    assert!(left["state"].get("pass").is_some(), "{left:#}");

    // The passes arrive: the moved actors answer their waiting callers in v2's shape.
    for k in keys {
        let r = server.event(
            "checkin",
            k,
            json!({"type": "boarding_pass_ready", "pass": format!("BP-{k}")}),
        );
        assert_eq!(r.status, 202, "{}", body(&r));
    }
    for (k, location) in keys.iter().zip(&waiting) {
        let done = settled(&server, location);
        assert_eq!(done["status"], "completed", "{done}");
        if *k == "UP3" {
            assert_eq!(done["reply"], json!({"pass": "BP-UP3"}));
        } else {
            let pass = &done["reply"]["boarding_pass"];
            assert_eq!(pass["code"], format!("BP-{k}"), "{done}");
            assert!(pass["issued_at_ms"].as_u64().unwrap() > 0, "{done}");
        }
    }

    // The run is listed; another tenant sees none of it.
    let list = server.get("/v1/modules/checkin/upgrades").json();
    assert_eq!(list["items"][0]["id"], id.as_str());
    let other = server.new_tenant("other");
    let auth = format!("Bearer {other}");
    let as_other = |method: &str, path: &str, body: Option<&[u8]>| {
        server.request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
    };
    as_other("GET", "/v1/modules/checkin/upgrades", None).assert_problem(404);
    as_other("GET", &format!("/v1/modules/checkin/upgrades/{id}"), None).assert_problem(404);
    as_other(
        "POST",
        &format!("/v1/modules/checkin/upgrades/{id}/rollback"),
        None,
    )
    .assert_problem(404);
    let plan = json!({"from": 1, "to": 2, "select": "all", "mode": "apply"}).to_string();
    as_other(
        "POST",
        "/v1/modules/checkin/upgrades",
        Some(plan.as_bytes()),
    )
    .assert_problem(404);
    assert_eq!(
        actor(&server, "UP3")["version"],
        1,
        "the other tenant moved nothing"
    );

    // Bad plans are refused with a problem, nothing moved.
    server
        .post_json(
            "/v1/modules/checkin/upgrades",
            &json!({"from": 1, "to": 9, "select": "all", "mode": "apply"}),
            &[],
        )
        .assert_problem(422);
    server
        .post_json(
            "/v1/modules/checkin/upgrades",
            &json!({"from": 1, "to": 2, "select": "some", "mode": "apply"}),
            &[],
        )
        .assert_problem(400);
    server
        .get("/v1/modules/checkin/upgrades/up_nope")
        .assert_problem(404);
}

#[test]
fn a_v3_that_traps_is_caught_by_the_dry_run_and_apply_refuses_it_unless_forced() {
    let server = Server::start(&[]);
    deploy(&server, "checkin", 1);
    for k in ["TR1", "TR2"] {
        register(&server, k);
        check_in(&server, k);
    }
    deploy(&server, "checkin_v2", 2);
    deploy(&server, "checkin_v3", 3);

    let dry = upgrade(
        &server,
        json!({"from": 1, "to": 3, "select": "all", "mode": "dry-run"}),
    );
    assert_eq!(dry["status"], "planned", "{dry:#}");
    let report = &dry["report"];
    assert_eq!(report["selected"], 2, "{dry:#}");
    assert_eq!(report["would_trap"], 2, "{dry:#}");
    assert_eq!(report["problems"], 2, "{dry:#}");
    let named: Vec<&str> = report["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["TR1", "TR2"]);
    for a in report["actors"].as_array().unwrap() {
        let problem = a["problem"].as_str().unwrap();
        assert!(
            problem.contains("call check_in") && problem.contains("version 3 cannot check in"),
            "{problem}"
        );
        let turn = a["turns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["message"] == "call check_in")
            .unwrap();
        assert_eq!(turn["was"], "ok");
        assert!(
            turn["now"].as_str().unwrap().starts_with("trapped"),
            "{turn}"
        );
    }
    // The same plan to v2 is clean.
    let fine = upgrade(
        &server,
        json!({"from": 1, "to": 2, "select": "all", "mode": "dry-run"}),
    );
    assert_eq!(fine["report"]["problems"], 0, "{fine:#}");

    let refused = upgrade(
        &server,
        json!({"from": 1, "to": 3, "select": "all", "mode": "apply"}),
    );
    assert_eq!(refused["status"], "refused", "{refused:#}");
    assert!(
        refused["reason"].as_str().unwrap().contains("force"),
        "{refused:#}"
    );
    assert_eq!(actor(&server, "TR1")["version"], 1);

    let forced = upgrade(
        &server,
        json!({"from": 1, "to": 3, "select": {"keys": ["TR1"]}, "mode": "apply", "force": true}),
    );
    let id = forced["id"].as_str().unwrap();
    let done = run_reaches(&server, id, "completed");
    assert_eq!(done["report"]["moved"], 1, "{done:#}");
    assert_eq!(actor(&server, "TR1")["version"], 3);
    assert_eq!(actor(&server, "TR2")["version"], 1);
    let runs = server.get("/v1/modules/checkin/upgrades").json();
    assert_eq!(runs["items"].as_array().unwrap().len(), 4, "{runs:#}");

    // On version 3 a check-in traps and is dead-lettered; a hotfix runs it on version 2,
    // dry first (nothing performed), then for real.
    let location = check_in(&server, "TR1");
    let failed = settled(&server, &location);
    assert_eq!(failed["status"], "failed", "{failed}");
    let dead = server.eventually(LONG, "the dead letter", || {
        let a = actor(&server, "TR1");
        a["dead_letters"].as_array().unwrap().first().cloned()
    });
    let seq = dead["seq"].as_u64().unwrap();
    let retry = format!("/v1/actors/checkin/TR1/dead-letters/{seq}/retry");
    let dry = server.post_json(&retry, &json!({"version": 2, "dry_run": true}), &[]);
    assert_eq!(dry.status, 200, "{}", body(&dry));
    let dry = dry.json();
    assert_eq!(dry["outcome"], "ok", "{dry:#}");
    assert_eq!(dry["migrate"], "unchanged", "v2 keeps a v3 state: {dry:#}");
    assert_eq!(
        dry["state"]["waiting"].as_array().unwrap().len(),
        2,
        "{dry:#}"
    );
    let on3 = actor(&server, "TR1");
    assert_eq!(on3["version"], 3, "a dry run moves nothing");
    assert_eq!(on3["dead_letters"].as_array().unwrap().len(), 1);
    let wrong = server.post_json(&retry, &json!({"version": 7, "dry_run": true}), &[]);
    wrong.assert_problem(422);
    server
        .post_json(&retry, &json!({"version": "two"}), &[])
        .assert_problem(400);

    let applied = server.post_json(&retry, &json!({"version": 2}), &[]);
    assert_eq!(applied.status, 202, "{}", body(&applied));
    let again = applied.header("location").expect("a new request");
    let on2 = actor(&server, "TR1");
    assert_eq!(on2["version"], 2, "{on2:#}");
    assert!(
        on2["dead_letters"].as_array().unwrap().is_empty(),
        "{on2:#}"
    );
    server.event(
        "checkin",
        "TR1",
        json!({"type": "boarding_pass_ready", "pass": "BP-TR1"}),
    );
    let done = settled(&server, &again);
    assert_eq!(done["reply"]["boarding_pass"]["code"], "BP-TR1", "{done}");
}

/// The keys of the check-in actors on `version`.
fn on_version(server: &Server, version: u32) -> Vec<String> {
    let r = server.get(&format!(
        "/v1/actors?module=checkin&version={version}&limit=1000"
    ));
    assert_eq!(r.status, 200, "{}", body(&r));
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_faulty_canary_rolls_itself_back_and_a_sound_one_goes_on_to_all() {
    let server = Server::start(&[]);
    deploy(&server, "checkin", 1);
    let keys: Vec<String> = (0..30).map(|i| format!("CAN{i}")).collect();
    for k in &keys {
        register(&server, k);
    }
    deploy(&server, "checkin_v2", 2);
    deploy(&server, "checkin_v3", 3);

    let canary = |to: u32| {
        json!({"from": 1, "to": to, "select": "all", "mode": "canary", "force": true,
               "canary": {"percent": 10, "turns": 1, "wait_s": 60}})
    };
    let before: std::collections::HashMap<String, Value> = keys
        .iter()
        .map(|k| (k.clone(), actor(&server, k)["state"].clone()))
        .collect();
    let faulty = upgrade(&server, canary(3));
    let id = faulty["id"].as_str().unwrap().to_owned();
    let watching = run_reaches(&server, &id, "watching");
    let moved = on_version(&server, 3);
    let moved_n = watching["report"]["canary"]["moved"].as_u64().unwrap();
    assert!((1..10).contains(&moved_n), "{watching:#}");
    assert_eq!(moved.len() as u64, moved_n);
    assert_eq!(actor(&server, &moved[0])["state"]["migrated_from"], 1);
    // Everyone is asked to check in: version 3 traps, its messages are dead-lettered.
    for k in &keys {
        check_in(&server, k);
    }
    let rolled = run_reaches(&server, &id, "rolled_back");
    assert_eq!(rolled["report"]["rolled_back"], moved_n, "{rolled:#}");
    assert!(
        rolled["report"]["canary"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("rolled back"),
        "{rolled:#}"
    );
    assert_eq!(on_version(&server, 3), Vec::<String>::new());
    assert_eq!(on_version(&server, 1).len(), keys.len());
    // Back on version 1 with their old state; they go on there.
    for k in &moved {
        let a = actor(&server, k);
        assert_eq!(a["version"], 1);
        assert_eq!(a["state"], before[k], "{k}");
        let location = check_in(&server, k);
        server.event(
            "checkin",
            k,
            json!({"type": "boarding_pass_ready", "pass": format!("BP-{k}")}),
        );
        let done = settled(&server, &location);
        assert_eq!(done["reply"], json!({"pass": format!("BP-{k}")}), "{done}");
    }

    // A sound version: the canary passes and the rest follow.
    let sound = upgrade(&server, canary(2));
    let id = sound["id"].as_str().unwrap().to_owned();
    run_reaches(&server, &id, "watching");
    for k in &keys {
        check_in(&server, k);
    }
    let done = run_reaches(&server, &id, "completed");
    assert_eq!(done["report"]["canary"]["verdict"], "passed", "{done:#}");
    assert_eq!(on_version(&server, 2).len(), keys.len(), "{done:#}");
    assert_eq!(on_version(&server, 1), Vec::<String>::new());
}

#[test]
fn a_sigkill_in_the_middle_of_an_apply_resumes_and_leaves_no_actor_half_moved() {
    let mut server = Server::start(&[]);
    deploy(&server, "checkin", 1);
    let n = 1200;
    for i in 0..n {
        register(&server, &format!("K{i:04}"));
    }
    deploy(&server, "checkin_v2", 2);
    let started = upgrade(
        &server,
        json!({"from": 1, "to": 2, "select": "all", "mode": "apply", "replay_turns": 0}),
    );
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(started["report"]["selected"], n);
    // Over 1000 actors: the answer does not wait for the dry run.
    assert_eq!(started["status"], "planning", "{started:#}");
    // Killed once the run has saved some progress, well before the end.
    let t = Instant::now();
    let seen = server.eventually(LONG, "the run to move some actors", || {
        let r = run(&server, &id);
        (r["report"]["moved"].as_u64().unwrap() > 0).then_some(r)
    });
    server.kill_now();
    assert_eq!(seen["status"], "applying", "killed too late: {seen:#}");
    assert!(t.elapsed() < LONG);
    server.start_again();
    let done = run_reaches(&server, &id, "completed");
    assert!(
        done["report"]["moved"].as_u64().unwrap() <= n as u64,
        "{done:#}"
    );
    // Every actor ended on version 2 with a migrated state: version and state agree.
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/actors?module=checkin&limit=500&cursor={c}"),
            None => "/v1/actors?module=checkin&limit=500".into(),
        };
        let page = server.get(&path).json();
        for a in page["items"].as_array().unwrap() {
            seen += 1;
            let key = a["key"].as_str().unwrap();
            assert_eq!(a["version"], 2, "{key} not moved: {a}");
            let s = actor(&server, key)["state"].clone();
            assert_eq!(
                s["migrated_from"], 1,
                "{key}: version 2 without a migrated state: {s}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, n);
}

/// `dwell <args>` as a client of `server` (its key files), text output unless `-o json`.
fn cli(server: &Server, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dwell"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DWELL_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .env("DWELL_URL", &server.base)
        .env("DWELL_DATA", &server.data)
        .output()
        .expect("run dwell");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_plans_applies_lists_and_rolls_back_upgrades_and_counts_versions() {
    let server = Server::start(&[]);
    deploy(&server, "checkin", 1);
    for k in ["CLI1", "CLI2", "CLI3"] {
        register(&server, k);
        check_in(&server, k);
    }
    deploy(&server, "checkin_v2", 2);
    deploy(&server, "checkin_v3", 3);

    let (ok, out, err) = cli(&server, &["versions", "checkin"]);
    assert!(ok, "{out}{err}");
    let row = |version: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(version))
            .unwrap_or_else(|| panic!("no version {version}: {out}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (row("1"), row("2"), row("3")),
        ("3".into(), "0".into(), "0".into()),
        "{out}"
    );

    // A plan to v3 names the trap; apply refuses it (exit 0: the run says `refused`).
    let (ok, out, err) = cli(
        &server,
        &["upgrade", "plan", "checkin", "--from", "1", "--to", "3"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("planned"), "{out}");
    assert!(out.contains("would trap 3"), "{out}");
    assert!(
        out.contains("CLI1") && out.contains("version 3 cannot check in"),
        "{out}"
    );
    let (ok, out, _) = cli(
        &server,
        &["upgrade", "apply", "checkin", "--from", "1", "--to", "3"],
    );
    assert!(ok && out.contains("refused"), "{out}");

    // Apply two to v2 and wait; JSON for scripts.
    let (ok, out, err) = cli(
        &server,
        &[
            "-o",
            "json",
            "upgrade",
            "apply",
            "checkin",
            "--from",
            "1",
            "--to",
            "2",
            "--keys",
            "CLI1,CLI2",
            "--wait",
        ],
    );
    assert!(ok, "{out}{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["report"]["moved"], 2);
    let id = run["id"].as_str().unwrap();
    let (_, out, _) = cli(&server, &["versions", "checkin"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("1 ") && l.split_whitespace().nth(1) == Some("1")),
        "{out}"
    );
    let (ok, out, _) = cli(&server, &["upgrade", "list", "checkin"]);
    assert!(ok && out.contains(id) && out.contains("completed"), "{out}");

    // Rolled back: both on v1 again with their old state.
    let (ok, out, err) = cli(&server, &["upgrade", "rollback", "checkin", id]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("rolled_back") && out.contains("rolled back 2"),
        "{out}"
    );
    assert_eq!(actor(&server, "CLI1")["version"], 1);
    assert!(actor(&server, "CLI1")["state"].get("pass").is_some());
}

#[test]
fn the_console_shows_versions_upgrade_runs_with_their_reports_and_rolls_back() {
    let server = Server::start(&[]);
    deploy(&server, "checkin", 1);
    for k in ["UI1", "UI2"] {
        register(&server, k);
        check_in(&server, k);
    }
    deploy(&server, "checkin_v2", 2);
    deploy(&server, "checkin_v3", 3);
    let dry = upgrade(
        &server,
        json!({"from": 1, "to": 3, "select": "all", "mode": "dry-run"}),
    );
    let applied = upgrade(
        &server,
        json!({"from": 1, "to": 2, "select": {"keys": ["UI1"]}, "mode": "apply"}),
    );
    let applied_id = applied["id"].as_str().unwrap().to_owned();
    run_reaches(&server, &applied_id, "completed");
    let Some(b) = crate::webdriver::Browser::start("upgrades") else {
        return;
    };
    b.goto(&format!("{}/ui/modules/checkin", server.base));
    b.fill("#key", &server.key);
    b.click("#sign-in button[type=submit]");
    b.wait_for("#sign-out:not([hidden])");

    // The module's runs, newest first.
    let runs = b.wait_text("#upgrades", &applied_id);
    assert!(runs.contains(dry["id"].as_str().unwrap()), "{runs}");
    assert!(
        runs.contains("completed") && runs.contains("planned"),
        "{runs}"
    );
    b.screenshot("1-runs");

    // The dry run's report names the actors and the trap.
    b.goto(&format!(
        "{}/ui/modules/checkin/upgrades/{}",
        server.base,
        dry["id"].as_str().unwrap()
    ));
    let summary = b.wait_text("#run-summary", "planned");
    assert!(summary.contains("would trap 2"), "{summary}");
    let actors = b.wait_text("#run-actors", "UI1");
    assert!(
        actors.contains("UI2") && actors.contains("version 3 cannot check in"),
        "{actors}"
    );
    assert!(
        b.find_all("#rollback").is_empty(),
        "a dry run moved nothing to roll back"
    );
    b.screenshot("2-dry-run");

    // The applied run: the actor's page shows version 2; rolled back from the console.
    b.goto(&format!("{}/ui/actors/checkin/UI1", server.base));
    b.wait_text("#summary", "2 (sha256:");
    b.goto(&format!(
        "{}/ui/modules/checkin/upgrades/{applied_id}",
        server.base
    ));
    b.wait_text("#run-summary", "completed");
    b.click("#rollback");
    b.wait_text("#run-message", "Rolled back 1 actor");
    b.wait_text("#run-summary", "rolled_back");
    b.screenshot("3-rolled-back");
    assert_eq!(actor(&server, "UI1")["version"], 1);
    b.goto(&format!("{}/ui/actors/checkin/UI1", server.base));
    b.wait_text("#summary", "1 (sha256:");
}

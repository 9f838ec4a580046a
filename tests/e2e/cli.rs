//! The `dwell` command line as a user types it, against a running server: deploy, call,
//! send, inspect, request, modules, actors, dead letters, the admin commands for tenants
//! and keys, in tables and as JSON; and `dwell serve`'s configuration from a config
//! file, the environment and flags.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Server, guest};

/// `dwell <args>` with no `DWELL_*` variable from the test's own environment.
fn bare(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dwell"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DWELL_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Run `dwell <args>` as a client of `server`, with the key files of its data directory.
fn dwell(server: &Server, args: &[&str]) -> Output {
    bare(args)
        .env("DWELL_URL", &server.base)
        .env("DWELL_DATA", &server.data)
        .output()
        .expect("run dwell")
}

/// The same with `-o json`: the API's JSON on stdout.
fn dwell_json(server: &Server, args: &[&str]) -> Output {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    dwell(server, &all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout of a command that must succeed.
fn ok_text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// The table row whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Null; // 204 No Content
    }
    serde_json::from_str(&text).expect("JSON on stdout")
}

#[test]
fn the_cli_deploys_calls_sends_and_inspects_with_the_default_tenant_key() {
    let server = Server::start(&[]);
    let counter = guest("counter");
    let deployed = ok_json(&dwell_json(
        &server,
        &["deploy", counter.to_str().unwrap(), "--name", "counter"],
    ));
    assert_eq!(deployed["name"], "counter");
    assert_eq!(deployed["version"], 1);

    let reply = ok_json(&dwell_json(&server, &["call", "counter/c", r#"{"add":2}"#]));
    assert_eq!(reply["total"], 2);
    let sent = ok_json(&dwell_json(&server, &["send", "counter/c", r#"{"add":3}"#]));
    assert_eq!(sent["status"], "accepted");
    let total = server.eventually(Duration::from_secs(5), "the event applied", || {
        let actor = ok_json(&dwell_json(&server, &["inspect", "counter/c"]));
        (actor["state"]["total"] == 5).then_some(actor)
    });
    assert_eq!(total["turns"], 2);

    // An unknown module: with `-o json` the problem document on stdout, else its title
    // and detail on stderr; a failing exit code either way.
    let out = dwell_json(&server, &["call", "nope/c", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(problem["status"], 404);
    let out = dwell(&server, &["call", "nope/c", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).starts_with("error: Not found (404): "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_cli_manages_tenants_and_keys_with_the_admin_key() {
    let server = Server::start(&[]);
    let created = ok_json(&dwell_json(&server, &["tenant", "create", "acme"]));
    assert_eq!(created["name"], "acme");
    let list = ok_json(&dwell_json(&server, &["tenant", "list"]));
    assert!(list.to_string().contains("\"acme\""), "{list}");

    let issued = ok_json(&dwell_json(&server, &["key", "issue", "acme"]));
    let (id, key) = (
        issued["id"].as_str().unwrap().to_owned(),
        issued["key"].as_str().unwrap().to_owned(),
    );
    let counter = guest("counter");
    let as_acme = |args: &[&str]| {
        let mut all = vec!["-o", "json", "--key", key.as_str()];
        all.extend_from_slice(args);
        dwell(&server, &all)
    };
    ok_json(&as_acme(&[
        "deploy",
        counter.to_str().unwrap(),
        "--name",
        "counter",
    ]));
    let reply = ok_json(&as_acme(&["call", "counter/x", r#"{"add":7}"#]));
    assert_eq!(reply["total"], 7);
    // The default tenant does not see acme's module.
    let out = dwell(&server, &["call", "counter/x", r#"{"add":1}"#]);
    assert_eq!(out.status.code(), Some(1));

    ok_json(&dwell_json(&server, &["key", "revoke", "acme", &id]));
    let out = as_acme(&["call", "counter/x", r#"{"add":1}"#]);
    assert_eq!(out.status.code(), Some(1), "a revoked key stops working");
    let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(problem["status"], 401);

    ok_json(&dwell_json(&server, &["tenant", "delete", "acme"]));
    let list = ok_json(&dwell_json(&server, &["tenant", "list"]));
    assert!(!list.to_string().contains("\"acme\""), "{list}");
}

#[test]
fn modules_actors_and_dead_letters_are_listed_shown_retried_and_deleted() {
    let server = Server::start(&[]);
    let counter = guest("counter");
    let deployed = ok_text(&dwell(
        &server,
        &["deploy", counter.to_str().unwrap(), "--name", "counter"],
    ));
    assert_eq!(row(&deployed, "module"), Some(vec!["module", "counter"]));
    assert_eq!(row(&deployed, "version"), Some(vec!["version", "1"]));

    // `module list` (and its short form `modules`) is a table with one row per module.
    for args in [&["module", "list"][..], &["modules"][..]] {
        let table = ok_text(&dwell(&server, args));
        assert!(table.starts_with("NAME "), "{table}");
        let counter_row = row(&table, "counter").expect("a row for counter");
        assert_eq!(counter_row[1..3], ["1", "1"], "version, versions: {table}");
        assert!(counter_row[3].starts_with("sha256:"), "{table}");
    }
    let list = ok_json(&dwell_json(&server, &["module", "list"]));
    assert_eq!(list["modules"][0]["name"], "counter");
    let shown = ok_text(&dwell(&server, &["module", "show", "counter"]));
    assert!(shown.starts_with("module counter\nVERSION"), "{shown}");
    assert!(
        row(&shown, "1").is_some_and(|r| r[1].starts_with("sha256:")),
        "{shown}"
    );

    // An actor: the reply as JSON, an event, the actor as fields.
    let reply: Value = serde_json::from_str(&ok_text(&dwell(
        &server,
        &["call", "counter/a", r#"{"add":2}"#],
    )))
    .expect("the reply is JSON");
    assert_eq!(reply["total"], 2);
    let sent = ok_text(&dwell(&server, &["send", "counter/a", r#"{"add":3}"#]));
    assert!(sent.starts_with("accepted as message "), "{sent}");
    server.eventually(Duration::from_secs(5), "the event applied", || {
        let shown = ok_text(&dwell(&server, &["actor", "show", "counter/a"]));
        row(&shown, "turns")
            .is_some_and(|r| r[1] == "2")
            .then_some(())
    });
    let shown = ok_text(&dwell(&server, &["inspect", "counter/a"]));
    assert_eq!(row(&shown, "actor"), Some(vec!["actor", "counter/a"]));
    assert_eq!(row(&shown, "status"), Some(vec!["status", "active"]));
    assert!(shown.contains("state\n{\n  \"total\": 5\n}"), "{shown}");

    // A call the actor cannot decode is refused as invalid (422); the same body as an
    // event has nobody to tell and becomes a dead letter, which can be retried.
    let out = dwell(&server, &["call", "counter/b", r#"{"subtract":1}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: Refused by the process (422)"),
        "{}",
        stderr(&out)
    );
    ok_text(&dwell(&server, &["send", "counter/b", r#"{"subtract":1}"#]));
    let dead = server.eventually(Duration::from_secs(5), "the dead letter", || {
        let dead = ok_text(&dwell(&server, &["dead-letter", "list", "counter/b"]));
        (dead.lines().count() == 2).then_some(dead)
    });
    assert!(dead.starts_with("SEQ "), "{dead}");
    let seq = dead
        .lines()
        .nth(1)
        .expect("one dead letter")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(dead.contains("missing field"), "{dead}");
    assert!(dead.contains(r#"{"subtract":1}"#), "{dead}");
    let retried = ok_json(&dwell_json(
        &server,
        &["dead-letter", "retry", "counter/b", &seq],
    ));
    assert_eq!(retried["status"], "accepted", "{retried}");
    // Refused the same way again: a new dead letter, and the old one is gone.
    let again = server.eventually(Duration::from_secs(5), "the second dead letter", || {
        let shown = ok_json(&dwell_json(&server, &["actor", "show", "counter/b"]));
        (shown["dead_letter_count"] == 2).then_some(shown)
    });
    assert_eq!(again["dead_letters"].as_array().unwrap().len(), 1);
    let out = dwell(&server, &["dead-letter", "retry", "counter/b", &seq]);
    assert_eq!(out.status.code(), Some(1), "it was moved back, not copied");

    // Deleting.
    let done = ok_text(&dwell(&server, &["actor", "delete", "counter/a"]));
    assert_eq!(done, "deleted actor counter/a\n");
    let out = dwell(&server, &["inspect", "counter/a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: Not found (404)"),
        "{}",
        stderr(&out)
    );
    let done = ok_text(&dwell(&server, &["module", "delete", "counter"]));
    assert_eq!(done, "deleted module counter\n");
    let list = ok_json(&dwell_json(&server, &["module", "list"]));
    assert_eq!(list["modules"], serde_json::json!([]));
    let out = dwell(&server, &["module", "show", "counter"]);
    assert_eq!(out.status.code(), Some(1));
    let out = dwell(&server, &["inspect", "not-an-actor"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses a target without a key"
    );
    assert!(stderr(&out).contains("MODULE/KEY"), "{}", stderr(&out));
}

#[test]
fn tenants_are_shown_and_updated_from_the_cli() {
    let server = Server::start(&[]);
    let created = ok_text(&dwell(&server, &["tenant", "create", "acme"]));
    assert_eq!(row(&created, "tenant"), Some(vec!["tenant", "acme"]));
    assert!(
        created.contains("whsec_"),
        "the secret is shown once: {created}"
    );
    let first_secret = row(&created, "webhook").unwrap()[2].to_owned();

    let table = ok_text(&dwell(&server, &["tenant", "list"]));
    assert!(table.starts_with("NAME "), "{table}");
    assert!(row(&table, "acme").is_some(), "{table}");
    assert!(row(&table, "default").is_some(), "{table}");

    let updated = ok_text(&dwell(
        &server,
        &[
            "tenant",
            "update",
            "acme",
            "--max-actors",
            "5",
            "--memory",
            "32MiB",
            "--max-message-bytes",
            "2KiB",
            "--turn-time",
            "250ms",
            "--allow-http",
            "a.example,b.example:8443",
        ],
    ));
    assert_eq!(
        row(&updated, "max_actors"),
        Some(vec!["max_actors", "5", "tenant"])
    );
    assert_eq!(
        row(&updated, "max_modules"),
        Some(vec!["max_modules", "100", "server", "default"])
    );
    let shown = ok_json(&dwell_json(&server, &["tenant", "show", "acme"]));
    assert_eq!(shown["quotas"]["max_actors"], 5);
    assert_eq!(shown["quotas"]["memory_mb"], 32);
    assert_eq!(shown["quotas"]["max_message_bytes"], 2048);
    assert_eq!(shown["quotas"]["turn_time_ms"], 250);
    assert_eq!(
        shown["allow_http"],
        serde_json::json!(["a.example", "b.example:8443"])
    );
    assert!(shown.get("webhook_secret").is_none(), "shown only once");

    let rotated = ok_json(&dwell_json(
        &server,
        &[
            "tenant",
            "update",
            "acme",
            "--rotate-webhook-secret",
            "--deny-all-http",
        ],
    ));
    let secret = rotated["webhook_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret != first_secret);
    assert_eq!(rotated["allow_http"], serde_json::json!([]));
    assert_eq!(rotated["quotas"]["max_actors"], 5, "other overrides kept");

    let out = dwell(&server, &["tenant", "update", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: nothing to change"),
        "{}",
        stderr(&out)
    );
    let out = dwell(&server, &["tenant", "show", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: Not found (404)"),
        "{}",
        stderr(&out)
    );
}

/// A config file in its own directory.
fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dwell.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

/// `{"add":1,"pad":"xx…"}` of `bytes` bytes.
fn padded(bytes: usize) -> String {
    let pad = "x".repeat(bytes - r#"{"add":1,"pad":""}"#.len());
    format!(r#"{{"add":1,"pad":"{pad}"}}"#)
}

#[test]
fn a_config_file_sets_options_the_environment_overrides_it_and_flags_override_both() {
    let counter = guest("counter");
    let (_dir, file) = config_file("max_body = \"2 KiB\"\ndefault_wait = \"2s\"\n");
    let server = Server::start(&["--config", &file]);
    ok_text(&dwell(
        &server,
        &["deploy", counter.to_str().unwrap(), "--name", "counter"],
    ));
    let body = padded(1024);
    ok_text(&dwell(&server, &["call", "counter/a", &body]));
    let out = dwell(&server, &["call", "counter/a", &padded(3 * 1024)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: Payload too large (413)"),
        "{}",
        stderr(&out)
    );

    // The environment says 8 KiB, a flag 4 KiB: the flag wins over both.
    let server = Server::start_with_env(
        &["--config", &file, "--max-body", "4KiB"],
        &[("DWELL_MAX_BODY", "8KiB")],
    );
    ok_text(&dwell(
        &server,
        &["deploy", counter.to_str().unwrap(), "--name", "counter"],
    ));
    ok_text(&dwell(&server, &["call", "counter/a", &padded(3 * 1024)]));
    let out = dwell(&server, &["call", "counter/a", &padded(5 * 1024)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("(413)"), "{}", stderr(&out));
}

/// `dwell serve --dump-config` in `dir` with `envs`.
fn dump(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut all = vec!["serve", "--dump-config"];
    all.extend_from_slice(args);
    bare(&all)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .output()
        .expect("run dwell")
}

#[test]
fn dump_config_shows_the_layered_values_with_secrets_redacted() {
    // ./dwell.toml is read without being named.
    let (dir, _file) = config_file(
        "default_wait = \"7s\"\nmax_body = \"2 KiB\"\nhttp_workers = 3\n\
         webhook_secret = \"whsec_ZmlsZXNlY3JldA==\"\nallow_http = [\"file.example\"]\n",
    );
    let out = dump(
        dir.path(),
        &["--http-workers", "6", "--turn-time-ms", "250"],
        &[
            ("DWELL_MAX_BODY", "4KiB"),
            ("DWELL_HTTP_WORKERS", "5"),
            ("DWELL_ALLOW_HTTP", "a.example,b.example"),
            ("DWELL_ADMIN_KEY", "admin-secret-value"),
            ("DWELL_MEMORY_MB", "32"),
        ],
    );
    let text = ok_text(&out);
    assert!(
        text.starts_with("# dwell serve: the effective configuration (defaults < dwell.toml"),
        "{text}"
    );
    let dumped: toml::Table = text.parse().expect("the dump is TOML");
    assert_eq!(dumped["default_wait"].as_str(), Some("7s"), "from the file");
    assert_eq!(dumped["max_body"].as_str(), Some("4 KiB"), "env over file");
    assert_eq!(
        dumped["http_workers"].as_integer(),
        Some(6),
        "flag over env"
    );
    assert_eq!(
        dumped["turn_time"].as_str(),
        Some("250ms"),
        "--turn-time-ms"
    );
    assert_eq!(dumped["memory"].as_str(), Some("32 MiB"), "DWELL_MEMORY_MB");
    assert_eq!(dumped["listen"].as_str(), Some("127.0.0.1:8080"), "default");
    let allow: Vec<&str> = dumped["allow_http"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(allow, ["a.example", "b.example"]);
    assert_eq!(dumped["webhook_secret"].as_str(), Some("<redacted>"));
    assert_eq!(dumped["admin_key"].as_str(), Some("<redacted>"));
    assert!(!text.contains("ZmlsZXNlY3JldA") && !text.contains("admin-secret-value"));

    // The admin key as a flag is redacted as well; JSON on request.
    let out = dump(
        dir.path(),
        &["-o", "json", "--admin-key", "flag-secret"],
        &[],
    );
    let json: Value = serde_json::from_str(&ok_text(&out)).expect("JSON");
    assert_eq!(json["admin_key"], "<redacted>");
    assert_eq!(json["max_body"], "2 KiB");
    assert!(!stdout(&out).contains("flag-secret"));

    // DWELL_CONFIG names another file.
    let (_other, other) = config_file("max_state = 1000\n");
    let out = dump(dir.path(), &[], &[("DWELL_CONFIG", &other)]);
    let dumped: toml::Table = ok_text(&out).parse().unwrap();
    assert_eq!(dumped["max_state"].as_str(), Some("1000 B"));
    assert_eq!(
        dumped["max_body"].as_str(),
        Some("1 MiB"),
        "./dwell.toml not read"
    );
}

#[test]
fn bad_configuration_is_refused_naming_the_key_and_its_source() {
    let (dir, file) = config_file("max_body = \"1 MiB\"\nmax_bodyy = \"2 KiB\"\n");
    let out = dump(dir.path(), &["--config", &file], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("unknown key `max_bodyy`"), "{err}");
    assert!(err.contains(&file), "{err}");
    assert!(out.stdout.is_empty());

    let (dir, file) = config_file("default_wait = \"soon\"\n");
    let out = dump(dir.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: default_wait: "), "{err}");
    assert!(
        err.contains(&format!("config file {file}")) || err.contains("config file dwell.toml"),
        "{err}"
    );

    let out = dump(
        dir.path(),
        &[],
        &[("DWELL_DEFAULT_WAIT", "5s"), ("DWELL_MAX_BODY", "lots")],
    );
    let err = stderr(&out);
    assert!(err.starts_with("error: max_body: "), "{err}");
    assert!(err.contains("environment variable DWELL_MAX_BODY"), "{err}");

    let out = dump(dir.path(), &["--max-body", "lots"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-body"), "{}", stderr(&out));

    let out = dump(dir.path(), &["--config", "/nonexistent/dwell.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/dwell.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn output_has_no_escape_codes_when_piped() {
    let deploy = format!("counter={}", guest("counter").display());
    let server = Server::start(&["--deploy", &deploy]);
    let outputs = [
        dwell(&server, &["--help"]),
        dwell(&server, &["serve", "--help"]),
        dwell(&server, &["tenant", "list"]),
        dwell(&server, &["call", "nope/a", "{}"]),
        dwell(&server, &["frobnicate"]),
    ];
    for out in &outputs {
        for text in [&out.stdout, &out.stderr] {
            assert!(!text.contains(&0x1b), "{}", String::from_utf8_lossy(text));
        }
    }
    assert!(stdout(&outputs[1]).contains("--max-body <SIZE>"));
    assert!(stderr(&outputs[4]).contains("frobnicate"));
    let log = server.log();
    assert!(log.contains("deployed"), "the server logged: {log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}

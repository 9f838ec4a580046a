//! The `dwell` command line as a user types it, against a running server: deploy, call,
//! send, inspect, request, and the admin commands for tenants and keys.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Server, guest};

/// Run `dwell <args>` as a client of `server`, with the key files of its data directory.
fn dwell(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dwell"))
        .args(args)
        .env("DWELL_URL", &server.base)
        .env("DWELL_DATA", &server.data)
        .env_remove("DWELL_KEY")
        .env_remove("DWELL_ADMIN_KEY")
        .output()
        .expect("run dwell")
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
    let deployed = ok_json(&dwell(
        &server,
        &["deploy", counter.to_str().unwrap(), "--name", "counter"],
    ));
    assert_eq!(deployed["name"], "counter");
    assert_eq!(deployed["version"], 1);

    let reply = ok_json(&dwell(&server, &["call", "counter/c", r#"{"add":2}"#]));
    assert_eq!(reply["total"], 2);
    let sent = ok_json(&dwell(&server, &["send", "counter/c", r#"{"add":3}"#]));
    assert_eq!(sent["status"], "accepted");
    let total = server.eventually(Duration::from_secs(5), "the event applied", || {
        let actor = ok_json(&dwell(&server, &["inspect", "counter/c"]));
        (actor["state"]["total"] == 5).then_some(actor)
    });
    assert_eq!(total["turns"], 2);

    // An unknown module: the problem document on stdout and a failing exit code.
    let out = dwell(&server, &["call", "nope/c", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(problem["status"], 404);
}

#[test]
fn the_cli_manages_tenants_and_keys_with_the_admin_key() {
    let server = Server::start(&[]);
    let created = ok_json(&dwell(&server, &["tenant", "create", "acme"]));
    assert_eq!(created["name"], "acme");
    let list = ok_json(&dwell(&server, &["tenant", "list"]));
    assert!(list.to_string().contains("\"acme\""), "{list}");

    let issued = ok_json(&dwell(&server, &["key", "issue", "acme"]));
    let (id, key) = (
        issued["id"].as_str().unwrap().to_owned(),
        issued["key"].as_str().unwrap().to_owned(),
    );
    let counter = guest("counter");
    let as_acme = |args: &[&str]| {
        let mut all = vec!["--key", key.as_str()];
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

    ok_json(&dwell(&server, &["key", "revoke", "acme", &id]));
    let out = as_acme(&["call", "counter/x", r#"{"add":1}"#]);
    assert_eq!(out.status.code(), Some(1), "a revoked key stops working");
    let problem: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(problem["status"], 401);

    ok_json(&dwell(&server, &["tenant", "delete", "acme"]));
    let list = ok_json(&dwell(&server, &["tenant", "list"]));
    assert!(!list.to_string().contains("\"acme\""), "{list}");
}

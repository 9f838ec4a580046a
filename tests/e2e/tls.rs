//! HTTPS both ways: a guest's `https` call and an `https` callback reach services whose
//! certificate comes from a private CA trusted with `--ca-cert` (and are refused without
//! it), and the CLI talks to `dwell serve --tls-cert --tls-key`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake::{FakeService, answer};
use crate::harness::{Server, guest};
use crate::processes::verify_signature;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A private CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Dwell test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(p("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(p("key.pem"), leaf_key.serialize_pem()).unwrap();
    let server = Arc::new(dwell::tls::server_config(&p("cert.pem"), &p("key.pem")).unwrap());
    Pki {
        ca: p("ca.pem"),
        cert: p("cert.pem"),
        key: p("key.pem"),
        server,
        _dir: dir,
    }
}

fn probe_state(server: &Server, key: &str) -> Value {
    server.actor("probe", key).json()["state"].clone()
}

#[test]
fn a_guests_https_call_and_an_https_callback_reach_services_of_a_private_ca() {
    let trusted = pki();
    let stranger = pki(); // another CA, not given to the server
    let service = FakeService::start_tls(trusted.server.clone(), |_, _| {
        answer(200, r#"{"pass":"BP-TLS-1"}"#)
    });
    let impostor = FakeService::start_tls(stranger.server.clone(), |_, _| answer(200, "{}"));
    let receiver = FakeService::start_tls(trusted.server.clone(), |_, _| answer(200, "{}"));
    let allow = format!(
        "{},{},{}",
        service.host_port(),
        impostor.host_port(),
        receiver.host_port()
    );
    let server = Server::start(&[
        "--allow-private-net",
        "--allow-http",
        &allow,
        "--webhook-secret",
        SECRET,
        "--ca-cert",
        trusted.ca.to_str().unwrap(),
    ]);
    server.deploy("probe", "probe");

    for (call_id, url) in [
        ("good", format!("{}/passes", service.url)),
        ("bad", format!("{}/passes", impostor.url)),
    ] {
        let r = server.call(
            "probe",
            "tls",
            json!({"op": "http", "call_id": call_id, "url": url, "attempts": 1}),
        );
        assert_eq!(r.json(), json!({"ok": true}));
    }
    let http = server.eventually(Duration::from_secs(20), "both HTTP results", || {
        let http = probe_state(&server, "tls")["http"].clone();
        (http.as_array()?.len() == 2).then_some(http)
    });
    let by_id = |id: &str| {
        http.as_array()
            .unwrap()
            .iter()
            .find(|h| h["call_id"] == id)
            .cloned()
            .unwrap()
    };
    let good = by_id("good");
    assert_eq!(good["status"], 200, "{good}");
    assert_eq!(good["body"], r#"{"pass":"BP-TLS-1"}"#);
    assert_eq!(service.received()[0].path, "/passes");
    let bad = by_id("bad");
    assert!(bad["status"].is_null(), "{bad}");
    let error = bad["error"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        error.contains("certificate") || error.contains("issuer"),
        "{error}"
    );
    assert!(
        impostor.received().is_empty(),
        "no request crossed an untrusted TLS session"
    );

    let cb = format!("{}/hooks/dwell", receiver.url);
    let r = server.post_json(
        "/v1/actors/probe/tls",
        &json!({"op": "echo", "value": {"pass": "BP-TLS-1"}}),
        &[("prefer", "respond-async"), ("callback-url", &cb)],
    );
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap();
    let delivered = server.eventually(Duration::from_secs(20), "the callback", || {
        let rec = server.get(&location).json();
        (rec["callback"]["status"] == "delivered").then_some(rec)
    });
    assert_eq!(delivered["callback"]["attempts"], 1, "{delivered}");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hooks/dwell");
    assert!(verify_signature(&got[0], SECRET), "the signature verifies");
    assert_eq!(got[0].json()["reply"], json!({"pass": "BP-TLS-1"}));
}

fn dwell(server: &Server, ca: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dwell"));
    cmd.args(["-o", "json"]);
    if let Some(ca) = ca {
        cmd.arg("--ca-cert").arg(ca);
    }
    cmd.args(args)
        .env("DWELL_URL", &server.base)
        .env("DWELL_DATA", &server.data)
        .env_remove("DWELL_KEY")
        .env_remove("DWELL_ADMIN_KEY")
        .env_remove("DWELL_CA_CERT")
        .output()
        .expect("run dwell")
}

#[test]
fn the_cli_talks_to_dwell_serve_over_https() {
    let pki = pki();
    let server = Server::start(&[
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ]);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let counter = guest("counter");
    let out = dwell(
        &server,
        Some(&pki.ca),
        &["deploy", counter.to_str().unwrap(), "--name", "counter"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dwell(
        &server,
        Some(&pki.ca),
        &["call", "counter/c", r#"{"add":2}"#],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"total\":2"));
    // Without the CA the server's certificate is not trusted.
    let out = dwell(&server, None, &["call", "counter/c", r#"{"add":2}"#]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );
    // The state shows one call went through, not two.
    let out = dwell(&server, Some(&pki.ca), &["inspect", "counter/c"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"total\":2"));
}

//! The MessagePack/JSON boundary and the `Prefer` header, through the functions the HTTP
//! handlers call (`dwell::fuzzing` re-exports them from the hidden `dwell_http::codec`).
//!
//! One input is read three ways, so that the seeds can be plain files (a JSON document, a
//! MessagePack value, a few `Prefer` lines): as the request body; split at newlines, as
//! raw `Prefer` header values; and as `arbitrary` data for generated `Prefer` headers.
//!
//! Properties, for any input:
//! - nothing panics;
//! - a JSON body is accepted exactly when it is JSON, and then JSON → MessagePack → JSON
//!   gives back the same value (`to_guest`, then `to_json` and `to_json_lossless`);
//! - an `application/msgpack` body passes through unchanged when it is accepted, and what
//!   has a JSON form round-trips through JSON again; `to_json_lossless` is that JSON form,
//!   or else a `msgpack_base64` wrapper of exactly the bytes;
//! - `Prefer` never panics; a header generated from known preferences is understood
//!   (first `wait` counts, `respond-async` anywhere, names in any case, quoted words),
//!   and a granted wait is at most a day and echoes (`Preference-Applied`) to itself.

#![no_main]

use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::test::TestRequest;
use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use dwell::fuzzing::{Prefer, prefer, to_guest, to_json, to_json_lossless, wait_applied};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Pref {
    RespondAsync {
        upper: bool,
    },
    Wait {
        secs: u16,
        millis: Option<u16>,
        quoted: bool,
        space: bool,
        upper: bool,
        param: bool,
    },
    Other {
        name: u8,
        value: Option<u8>,
        quoted_comma: bool,
    },
}

impl Pref {
    fn render(&self) -> String {
        match self {
            Pref::RespondAsync { upper: true } => "Respond-Async".into(),
            Pref::RespondAsync { upper: false } => "respond-async".into(),
            Pref::Wait {
                secs,
                millis,
                quoted,
                space,
                upper,
                param,
            } => {
                let n = match millis {
                    Some(ms) => format!("{secs}.{:03}", ms % 1000),
                    None => secs.to_string(),
                };
                let n = if *quoted { format!("\"{n}\"") } else { n };
                let eq = if *space { " = " } else { "=" };
                let name = if *upper { "WAIT" } else { "wait" };
                let param = if *param { "; foo=\"a,b;c\"" } else { "" };
                format!("{name}{eq}{n}{param}")
            }
            Pref::Other {
                name,
                value,
                quoted_comma,
            } => {
                // Never `wait` or `respond-async`: names from a fixed alphabet.
                let name = format!("x{}", name % 16);
                match (value, quoted_comma) {
                    (Some(v), true) => format!("{name}=\"{v},wait=1\""),
                    (Some(v), false) => format!("{name}={v}"),
                    (None, _) => name,
                }
            }
        }
    }

    fn wait(&self) -> Option<Duration> {
        match self {
            Pref::Wait { secs, millis, .. } => Some(
                Duration::from_secs(u64::from(*secs))
                    + Duration::from_millis(u64::from(millis.map_or(0, |m| m % 1000))),
            ),
            _ => None,
        }
    }
}

fn json_request() -> actix_web::HttpRequest {
    TestRequest::default()
        .insert_header(("content-type", "application/json"))
        .to_http_request()
}

fn msgpack_request() -> actix_web::HttpRequest {
    TestRequest::default()
        .insert_header(("content-type", "application/msgpack"))
        .to_http_request()
}

/// JSON → MessagePack → JSON gives back `value`, by both ways back.
fn assert_round_trip(value: &serde_json::Value) {
    let text = serde_json::to_vec(value).expect("a JSON value serialises");
    let msgpack = match to_guest(&json_request(), &text) {
        Ok(m) => m,
        // serde_json's recursion limit: deeper JSON is refused (a MessagePack value from a
        // guest may be deeper, up to rmp-serde's limit of 1024).
        Err(e) if depth(value) >= 128 => {
            assert_eq!(e.status.as_u16(), 400);
            return;
        }
        Err(e) => panic!("valid JSON refused: {e:?}: {value}"),
    };
    assert_eq!(
        to_json(&msgpack).as_ref(),
        Some(value),
        "JSON → MessagePack → JSON changed the value"
    );
    assert_eq!(&to_json_lossless(&msgpack), value);
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What `to_json_lossless` must give for `msgpack`.
fn check_lossless(msgpack: &[u8]) {
    let lossless = to_json_lossless(msgpack);
    match to_json(msgpack) {
        Some(v) => assert_eq!(lossless, v, "lossless differs from the JSON form"),
        None => {
            let b64 = lossless
                .get("msgpack_base64")
                .and_then(|v| v.as_str())
                .expect("no JSON form: a msgpack_base64 wrapper");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("valid base64");
            assert_eq!(bytes, msgpack, "the wrapper carries exactly the bytes");
        }
    }
}

fn check_prefer(req: &actix_web::HttpRequest) -> Option<Prefer> {
    let p = prefer(req).ok()?;
    if let Some(wait) = p.wait {
        assert!(
            wait <= Duration::from_secs(86_400),
            "wait over a day: {wait:?}"
        );
        // The echo in `Preference-Applied` reads back as (almost exactly) the same wait.
        let echo = wait_applied(wait);
        let again = TestRequest::default()
            .insert_header(("prefer", echo.as_str()))
            .to_http_request();
        let back = prefer(&again)
            .unwrap_or_else(|e| panic!("our own echo {echo:?} refused: {e:?}"))
            .wait
            .expect("the echo is a wait");
        let diff = back.abs_diff(wait);
        assert!(
            diff <= Duration::from_micros(1),
            "{echo:?}: {wait:?} came back as {back:?}"
        );
    }
    Some(p)
}

fuzz_target!(|data: &[u8]| {
    check_body(data);
    check_raw_prefer(data);
    let prefs: Vec<Vec<Pref>> = Unstructured::new(data).arbitrary().unwrap_or_default();
    check_generated_prefer(&prefs);
});

fn check_body(body: &[u8]) {
    // The body as JSON.
    let json = serde_json::from_slice::<serde_json::Value>(body);
    match (to_guest(&json_request(), body), &json) {
        (Ok(msgpack), Ok(value)) => {
            assert_eq!(to_json(&msgpack).as_ref(), Some(value));
            check_lossless(&msgpack);
            assert_round_trip(value);
        }
        (Err(e), Err(_)) => assert_eq!(e.status.as_u16(), 400),
        (Ok(_), Err(e)) => panic!("invalid JSON accepted ({e})"),
        (Err(e), Ok(v)) => panic!("valid JSON refused: {e:?}: {v}"),
    }

    // The body as MessagePack.
    match to_guest(&msgpack_request(), body) {
        Ok(passed) => {
            assert_eq!(passed, body, "MessagePack passes through unchanged");
            check_lossless(&passed);
            if let Some(value) = to_json(&passed) {
                assert_round_trip(&value);
            }
        }
        Err(e) => assert_eq!(e.status.as_u16(), 400),
    }
    // Whatever a guest returns is shown somehow.
    check_lossless(body);
}

/// Every line a `Prefer` header (those that are valid header bytes): no panic, sane waits.
fn check_raw_prefer(data: &[u8]) {
    let mut req = TestRequest::default();
    for line in data.split(|b| *b == b'\n').take(8) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            req = req.append_header(("prefer", v));
        }
    }
    check_prefer(&req.to_http_request());
}

/// `Prefer` headers built from known preferences mean what they say.
fn check_generated_prefer(prefs: &[Vec<Pref>]) {
    let mut req = TestRequest::default();
    let mut expect_async = false;
    let mut expect_wait = None;
    let mut any = false;
    for header in prefs {
        let rendered: Vec<String> = header.iter().map(Pref::render).collect();
        if rendered.is_empty() {
            continue;
        }
        any = true;
        for p in header {
            expect_async |= matches!(p, Pref::RespondAsync { .. });
            if expect_wait.is_none() {
                expect_wait = p.wait();
            }
        }
        req = req.append_header(("prefer", rendered.join(", ")));
    }
    if !any {
        return;
    }
    let req = req.to_http_request();
    let got = check_prefer(&req).unwrap_or_else(|| {
        let headers: Vec<_> = req.headers().get_all("prefer").collect();
        panic!("well-formed Prefer refused: {headers:?}")
    });
    assert_eq!(got.respond_async, expect_async, "respond-async");
    assert_eq!(got.wait, expect_wait, "the first wait counts");
}

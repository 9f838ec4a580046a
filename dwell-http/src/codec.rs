//! The edge conversions: request bodies (bounded), JSON ↔ MessagePack, and the
//! `Prefer` header (RFC 7240).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::{StatusCode, header};
use actix_web::web;
use futures_util::StreamExt;

use super::problem::ApiError;
use crate::domain::TenantId;

/// How many request bodies each tenant is sending at once, bounded: a tenant (or a stolen
/// key) trickling bodies byte by byte ties up at most this many connections.
pub struct BodyReads {
    max: usize,
    open: Mutex<HashMap<TenantId, usize>>,
}

/// One body being received; dropping it frees its place.
pub struct BodyRead<'a> {
    reads: &'a BodyReads,
    tenant: TenantId,
}

impl BodyReads {
    pub fn new(max: usize) -> Self {
        BodyReads {
            max: max.max(1),
            open: Mutex::default(),
        }
    }

    /// A place for one more of `tenant`'s bodies, or `429` when all are taken.
    pub fn start(&self, tenant: &TenantId) -> Result<BodyRead<'_>, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(tenant.clone()).or_default();
        if *n >= self.max {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-uploads",
                "Too many bodies in progress",
                format!(
                    "this tenant is already sending {} request bodies; retry when one is done",
                    self.max
                ),
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        *n += 1;
        Ok(BodyRead {
            reads: self,
            tenant: tenant.clone(),
        })
    }
}

impl Drop for BodyRead<'_> {
    fn drop(&mut self) {
        let mut open = self.reads.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// Read the whole body within `timeout` (else `408`), refusing more than `limit` bytes
/// (`413`) without buffering them.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    tokio::time::timeout(timeout, read_all(req, payload, limit))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body too slow",
                format!(
                    "the body did not arrive within {} s of the headers",
                    timeout.as_secs_f64()
                ),
            ))
        })
}

async fn read_all(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("the body is over the limit of {limit} bytes"));
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn is_msgpack(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/msgpack") || v.starts_with("application/x-msgpack")
        })
}

pub fn wants_msgpack(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/msgpack"))
}

/// A message body for the guest: MessagePack passes through (checked to be one value),
/// JSON is converted.
pub fn to_guest(req: &HttpRequest, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if is_msgpack(req) {
        let mut cursor = body;
        rmp_serde::from_read::<_, serde::de::IgnoredAny>(&mut cursor).map_err(|e| {
            ApiError::bad_request(format!("the body is not valid MessagePack: {e}"))
        })?;
        if !cursor.is_empty() {
            return Err(ApiError::bad_request(
                "the body has bytes after its MessagePack value",
            ));
        }
        return Ok(body.to_vec());
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    rmp_serde::to_vec_named(&value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A guest's MessagePack as JSON, if it has a JSON form.
pub fn to_json(msgpack: &[u8]) -> Option<serde_json::Value> {
    rmp_serde::from_slice::<serde_json::Value>(msgpack).ok()
}

/// A guest's MessagePack as JSON, or, failing that, a JSON object carrying it in base64.
pub fn to_json_lossless(msgpack: &[u8]) -> serde_json::Value {
    crate::domain::msgpack_to_json(msgpack)
}

/// What the caller prefers (RFC 7240): how long to wait, or to be answered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefer {
    pub respond_async: bool,
    pub wait: Option<Duration>,
}

/// The preferences of every `Prefer` header, per RFC 7240: a comma-separated list of
/// `token [= word]` with `;`-separated parameters (ignored here), names matched without
/// regard to case, optional whitespace around `=`, `word` a token or a quoted string. The
/// first occurrence of a preference counts; unknown ones are ignored. A `wait` that is
/// not a number of seconds is a `400` (a silent default would surprise the caller).
pub fn prefer(req: &HttpRequest) -> Result<Prefer, ApiError> {
    let mut p = Prefer {
        respond_async: false,
        wait: None,
    };
    let mut seen_wait = false;
    for value in req.headers().get_all("prefer") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("the Prefer header is not ASCII"))?;
        for pref in split_unquoted(value, ',') {
            let head = split_unquoted(pref, ';').next().unwrap_or_default();
            let (name, word) = match head.split_once('=') {
                Some((n, w)) => (n.trim(), Some(unquote(w.trim()))),
                None => (head.trim(), None),
            };
            if name.eq_ignore_ascii_case("respond-async") {
                p.respond_async = true;
            } else if name.eq_ignore_ascii_case("wait") && !seen_wait {
                seen_wait = true;
                let n = word.unwrap_or_default();
                let secs: f64 = n
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "Prefer: wait={n} is not a number of seconds"
                        ))
                    })?;
                p.wait = Some(Duration::from_secs_f64(secs.min(86_400.0)));
            }
        }
    }
    Ok(p)
}

/// `s` split at every `sep` outside a quoted string.
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    s.split(move |c: char| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
    .filter(|part| !part.trim().is_empty())
}

/// The content of a quoted string (RFC 9110 §5.6.4), or a token as it is.
fn unquote(word: &str) -> String {
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            out
        }
        None => word.to_owned(),
    }
}

/// The `Preference-Applied` value for a wait that was honoured (RFC 7240 §3).
pub fn wait_applied(wait: Duration) -> String {
    let secs = wait.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("wait={}", wait.as_secs())
    } else {
        format!("wait={secs}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn prefer_parses_wait_and_async() {
        let req = TestRequest::default()
            .insert_header(("Prefer", "respond-async, wait=2.5"))
            .to_http_request();
        let p = prefer(&req).unwrap();
        assert!(p.respond_async);
        assert_eq!(p.wait, Some(Duration::from_millis(2500)));
        let bad = TestRequest::default()
            .insert_header(("Prefer", "wait=soon"))
            .to_http_request();
        assert_eq!(prefer(&bad).unwrap_err().status.as_u16(), 400);
    }

    fn parsed(headers: &[&str]) -> Prefer {
        let mut req = TestRequest::default();
        for h in headers {
            req = req.append_header(("Prefer", *h));
        }
        prefer(&req.to_http_request()).unwrap()
    }

    #[test]
    fn prefer_follows_rfc_7240() {
        let secs = |s| Some(Duration::from_secs(s));
        // Names are case-insensitive; whitespace around `=` is allowed.
        assert_eq!(parsed(&["Wait=1"]).wait, secs(1));
        assert_eq!(parsed(&["WAIT = 3"]).wait, secs(3));
        assert_eq!(parsed(&["wait=\"4\""]).wait, secs(4));
        assert!(parsed(&["Respond-Async"]).respond_async);
        // Several preferences, with parameters, in one header or several.
        let p = parsed(&["handling=lenient; foo=\"a,b\", wait=2;x=y, respond-async"]);
        assert_eq!((p.wait, p.respond_async), (secs(2), true));
        let p = parsed(&["return=minimal", "wait=7"]);
        assert_eq!(p.wait, secs(7));
        // The first occurrence counts; unknown preferences are ignored.
        assert_eq!(parsed(&["wait=1, wait=9"]).wait, secs(1));
        assert_eq!(
            parsed(&["frobnicate"]),
            Prefer {
                respond_async: false,
                wait: None
            }
        );
        assert_eq!(wait_applied(Duration::from_millis(2500)), "wait=2.5");
        assert_eq!(wait_applied(Duration::from_secs(5)), "wait=5");
    }

    #[test]
    fn json_round_trips_through_msgpack() {
        let req = TestRequest::default().to_http_request();
        let mp = to_guest(&req, br#"{"add": 5, "tags": ["a"]}"#).unwrap();
        assert_eq!(
            to_json(&mp).unwrap(),
            serde_json::json!({"add": 5, "tags": ["a"]})
        );
        assert_eq!(to_guest(&req, b"{nope").unwrap_err().status.as_u16(), 400);
    }

    /// Found by the `codec` fuzzer: serde_json's default float parsing is not correctly
    /// rounded, so a number the guest received came back as another one when its JSON was
    /// parsed again (the feature `float_roundtrip` fixes that).
    #[test]
    fn json_numbers_reach_the_guest_correctly_rounded() {
        let req = TestRequest::default().to_http_request();
        for text in [
            "18446770034745953615",
            "1.8446770034745954e19",
            "0.30000000000000004",
        ] {
            let mp = to_guest(&req, text.as_bytes()).unwrap();
            let got: f64 = rmp_serde::from_slice(&mp).unwrap();
            assert_eq!(got, text.parse::<f64>().unwrap(), "{text}");
            let again = to_json(&mp).unwrap().to_string();
            assert_eq!(
                to_guest(&req, again.as_bytes()).unwrap(),
                mp,
                "{text} → {again}"
            );
        }
    }
}

//! The edge conversions: request bodies (bounded), JSON ↔ MessagePack, and the
//! `Prefer` header (RFC 7240).

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web;
use futures_util::StreamExt;

use super::problem::ApiError;

/// Read the whole body, refusing more than `limit` bytes (413) without buffering them.
pub async fn read_body(
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

/// What the caller prefers: how long to wait, or to be answered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefer {
    pub respond_async: bool,
    pub wait: Option<Duration>,
}

pub fn prefer(req: &HttpRequest) -> Result<Prefer, ApiError> {
    let mut p = Prefer {
        respond_async: false,
        wait: None,
    };
    for value in req.headers().get_all("prefer") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("the Prefer header is not ASCII"))?;
        for pref in value.split([',', ';']) {
            let pref = pref.trim();
            if pref.eq_ignore_ascii_case("respond-async") {
                p.respond_async = true;
            } else if let Some(n) = pref.strip_prefix("wait=") {
                let secs: f64 = n
                    .trim()
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
}

//! Talking to the outside world: the destination allowlist, the node's one HTTP client
//! (TLS, a shared connection pool; one blocking attempt at a time, run off the async
//! workers), backoff, and Standard Webhooks signatures for callbacks.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::HttpReply;

/// Outbound settings.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Destinations guests and callbacks may reach: `host` (any port) or `host:port`.
    /// Nothing else is reachable.
    pub allow: Vec<String>,
    /// Attempts of a guest's HTTP call when it names none.
    pub default_attempts: u32,
    /// Per-attempt timeout when the guest names none.
    pub default_timeout: Duration,
    /// Attempts to deliver a callback before giving up.
    pub callback_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Largest response body read back (bigger is an error).
    pub max_response: usize,
    /// A PEM file of extra CA certificates to trust (beside Mozilla's roots).
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow: Vec::new(),
            default_attempts: 5,
            default_timeout: Duration::from_secs(10),
            callback_attempts: 8,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            concurrency: 32,
            max_response: 1 << 20,
            ca_cert: None,
        }
    }
}

/// Split an http(s) URL into `(host, port)`; `Err` says why it is unusable.
pub fn destination(url: &str) -> Result<(String, u16), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err(format!("{url:?} is not an http(s) URL")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Ok((host, uri.port_u16().unwrap_or(default_port)))
}

/// Is `url` on the allowlist?
pub fn check_allowed(allow: &[String], url: &str) -> Result<(), String> {
    let (host, port) = destination(url)?;
    let ok = allow.iter().any(|rule| {
        let rule = rule.trim().to_ascii_lowercase();
        match rule.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() && !h.is_empty() => {
                h.trim_start_matches('[').trim_end_matches(']') == host && p.parse() == Ok(port)
            }
            _ => rule.trim_start_matches('[').trim_end_matches(']') == host,
        }
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "destination {host}:{port} is not on this server's outbound allowlist"
        ))
    }
}

/// May a tenant reach `url`? It must be on the platform's or the tenant's allowlist, and
/// — unless the platform allows private networks — must not be a loopback, private or
/// link-local (metadata) address. With `resolve`, host names are resolved and every
/// address checked (at delivery); without, only literal addresses and `localhost` are.
pub fn check_destination(
    platform: &[String],
    tenant: &[String],
    url: &str,
    allow_private: bool,
    resolve: bool,
) -> Result<(), String> {
    if check_allowed(platform, url).is_err() {
        check_allowed(tenant, url)?;
    }
    if allow_private {
        return Ok(());
    }
    let (host, port) = destination(url)?;
    let private = |ip: std::net::IpAddr| crate::domain::is_private(ip);
    let refused = || {
        Err(format!(
            "destination {host}:{port} is a private, loopback or link-local address"
        ))
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return if private(ip) { refused() } else { Ok(()) };
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return refused();
    }
    if resolve {
        use std::net::ToSocketAddrs;
        let addrs = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        for a in addrs {
            if private(a.ip()) {
                return refused();
            }
        }
    }
    Ok(())
}

/// What one attempt produced.
#[derive(Debug)]
pub enum Attempt {
    /// A response arrived (any status).
    Response(HttpReply, Option<Duration>),
    /// No response: connect error, timeout, oversized body…
    Failed(String),
}

impl Attempt {
    /// Worth another try: no response, 5xx or 429.
    pub fn retryable(&self) -> bool {
        match self {
            Attempt::Response(r, _) => r.status >= 500 || r.status == 429,
            Attempt::Failed(_) => true,
        }
    }
}

/// How much of a response body an attempt keeps.
#[derive(Debug, Clone, Copy)]
pub enum ReadBody {
    /// The whole body, at most this many bytes; a larger body fails the attempt.
    Keep(usize),
    /// Read (and drop) at most this many bytes: only the status matters.
    Skim(usize),
}

/// The one outbound HTTP client of the node: TLS (Mozilla's roots plus `--ca-cert`),
/// a shared keep-alive connection pool, redirects never followed (they could leave the
/// allowlist). Guests' calls and callbacks both go through it.
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
}

impl HttpClient {
    pub fn new(cfg: &OutboundConfig) -> Result<Self, dwell_tls::Error> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("dwell")
            .tls_config(dwell_tls::client_config(cfg.ca_cert.as_deref())?)
            .max_idle_connections(cfg.concurrency.max(1) * 4)
            .max_idle_connections_per_host(cfg.concurrency.max(1))
            .build()
            .new_agent();
        Ok(HttpClient { agent })
    }

    /// One blocking HTTP exchange of at most `timeout`.
    pub fn attempt(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
        read: ReadBody,
    ) -> Attempt {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = match req.body(body.to_vec()) {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(format!("invalid request: {e}")),
        };
        let req = self
            .agent
            .configure_request(req)
            .timeout_global(Some(timeout))
            .build();
        let mut resp = match self.agent.run(req) {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = match read {
            ReadBody::Keep(max) => match resp
                .body_mut()
                .with_config()
                .limit(max as u64)
                .read_to_vec()
            {
                Ok(b) => b,
                Err(e) => return Attempt::Failed(format!("reading the response: {e}")),
            },
            ReadBody::Skim(max) => {
                use std::io::Read;
                let mut sink = Vec::new();
                // An error or a longer body after the status arrived changes nothing.
                let _ = resp
                    .body_mut()
                    .as_reader()
                    .take(max as u64)
                    .read_to_end(&mut sink);
                Vec::new()
            }
        };
        Attempt::Response(
            HttpReply {
                status,
                headers,
                body,
            },
            retry_after,
        )
    }
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3), capped at an hour.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// Exponential backoff with ±25% jitter after `attempt` failures (1-based).
pub fn backoff(cfg: &OutboundConfig, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    let base = cfg.backoff_base.saturating_mul(factor).min(cfg.backoff_max);
    let jitter: f64 = rand::random_range(0.75..1.25);
    base.mul_f64(jitter)
}

/// The Standard Webhooks signature header value for `body`:
/// `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")). The secret is
/// `whsec_` + base64 of the key bytes.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> Result<String, String> {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| "the webhook secret is not base64".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("v1,{sig}"))
}

/// A fresh random secret in the `whsec_` form.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_host_and_port() {
        let allow = vec!["127.0.0.1:9000".to_owned(), "api.example.com".to_owned()];
        assert!(check_allowed(&allow, "http://127.0.0.1:9000/x").is_ok());
        assert!(check_allowed(&allow, "http://127.0.0.1:9001/x").is_err());
        assert!(check_allowed(&allow, "https://API.example.com/pay").is_ok());
        assert!(check_allowed(&allow, "http://169.254.169.254/latest").is_err());
        assert!(check_allowed(&allow, "file:///etc/passwd").is_err());
        assert!(check_allowed(&[], "http://127.0.0.1:9000/x").is_err());
    }

    #[test]
    fn private_destinations_need_the_platform_switch() {
        let allow = vec!["127.0.0.1:9000".to_owned(), "169.254.169.254".to_owned()];
        let url = "http://127.0.0.1:9000/x";
        assert!(check_destination(&allow, &[], url, false, false).is_err());
        assert!(check_destination(&allow, &[], url, true, false).is_ok());
        let meta = "http://169.254.169.254/latest/meta-data";
        assert!(check_destination(&allow, &[], meta, false, true).is_err());
        let tenant = vec!["93.184.216.34".to_owned()];
        assert!(check_destination(&[], &tenant, "http://93.184.216.34/", false, false).is_ok());
        assert!(check_destination(&[], &[], "http://93.184.216.34/", false, false).is_err());
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks specification's reference test vector.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("99999"), Some(Duration::from_secs(3600)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = OutboundConfig::default();
        assert!(backoff(&cfg, 1) <= Duration::from_millis(250));
        assert!(backoff(&cfg, 30) <= cfg.backoff_max.mul_f64(1.25));
    }
}

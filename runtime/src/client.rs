//! The CLI's HTTP client: `dwell deploy|call|send|inspect|request` talk to a running
//! server over the public API, exactly like any other client.

use std::time::Duration;

/// A response as the CLI shows it.
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
    key: Option<String>,
}

impl Client {
    /// A client that sends `key` as its bearer token.
    pub fn with_key(base: &str, key: Option<String>) -> Self {
        let mut c = Self::new(base);
        c.key = key;
        c
    }

    /// A client for an `https://` server whose certificate is signed by the CA in
    /// `ca_cert` (besides the usual public roots), sending `key` as its bearer token.
    pub fn with_tls(
        base: &str,
        key: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, crate::tls::Error> {
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            agent: Self::agent(crate::tls::client_config(ca_cert)?),
            key,
        })
    }

    fn agent(tls: ureq::tls::TlsConfig) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .tls_config(tls)
            .build()
            .new_agent()
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => req.header("authorization", format!("Bearer {k}")),
            None => req,
        }
    }

    pub fn new(base: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent: Self::agent(ureq::tls::TlsConfig::default()),
            key: None,
        }
    }

    fn finish(
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Reply> {
        let mut resp = resp?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Ok(Reply {
            status,
            location,
            body,
        })
    }

    pub fn deploy(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<Reply> {
        Self::finish(
            self.auth(self.agent.put(format!("{}/v1/modules/{name}", self.base)))
                .header("content-type", "application/wasm")
                .send(&bytes[..]),
        )
    }

    pub fn call(&self, target: &str, json: &str, wait: Option<Duration>) -> anyhow::Result<Reply> {
        let mut req = self
            .auth(self.agent.post(format!("{}/v1/actors/{target}", self.base)))
            .header("content-type", "application/json");
        if let Some(w) = wait {
            req = req.header("prefer", format!("wait={}", w.as_secs_f64()));
        }
        Self::finish(req.send(json))
    }

    pub fn send(&self, target: &str, json: &str) -> anyhow::Result<Reply> {
        Self::finish(
            self.auth(
                self.agent
                    .post(format!("{}/v1/actors/{target}/events", self.base)),
            )
            .header("content-type", "application/json")
            .send(json),
        )
    }

    pub fn get(&self, path: &str, wait: Option<Duration>) -> anyhow::Result<Reply> {
        let mut req = self.auth(self.agent.get(format!("{}{path}", self.base)));
        if let Some(w) = wait {
            req = req.header("prefer", format!("wait={}", w.as_secs_f64()));
        }
        Self::finish(req.call())
    }
}

impl Client {
    /// POST a JSON document (admin commands).
    pub fn post_json(&self, path: &str, json: &str) -> anyhow::Result<Reply> {
        Self::finish(
            self.auth(self.agent.post(format!("{}{path}", self.base)))
                .header("content-type", "application/json")
                .send(json),
        )
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Reply> {
        Self::finish(
            self.auth(self.agent.delete(format!("{}{path}", self.base)))
                .call(),
        )
    }
}

/// Parse `500ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s or 2m"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{s:?} is not a positive duration"));
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
    }
}

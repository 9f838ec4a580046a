//! The CLI's HTTP client: every `dwell` command other than `serve` talks to a running
//! server over the public API through this, exactly like any other client.

use std::path::Path;
use std::time::Duration;

/// A request that got no HTTP response (connection refused, timeout, bad URL).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach {base}: {error}")]
pub struct Error {
    base: String,
    // Shown in the message, not as a `source`: ureq's message already includes its own.
    error: ureq::Error,
}

pub type Result<T> = std::result::Result<T, Error>;

/// A response as the CLI shows it.
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` when empty, e.g. `204`), if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        if self.body.trim().is_empty() {
            return Some(serde_json::Value::Null);
        }
        serde_json::from_str(&self.body).ok()
    }
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
    key: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent: Self::agent(ureq::tls::TlsConfig::default()),
            key: None,
        }
    }

    /// A client that sends `key` as its bearer token.
    pub fn with_key(base: &str, key: Option<String>) -> Self {
        Client {
            key,
            ..Self::new(base)
        }
    }

    /// Trust the CA certificates in `ca_cert` (PEM) besides the public roots, for an
    /// `https://` server with a private CA.
    pub fn with_ca_cert(
        self,
        ca_cert: Option<&Path>,
    ) -> std::result::Result<Self, crate::tls::Error> {
        Ok(Client {
            agent: Self::agent(crate::tls::client_config(ca_cert)?),
            ..self
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => req.header("authorization", format!("Bearer {k}")),
            None => req,
        }
    }

    fn finish(
        &self,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply> {
        let mut resp = resp.map_err(|error| Error {
            base: self.base.clone(),
            error,
        })?;
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

    /// `PUT /v1/modules/{name}` with the component's bytes.
    pub fn deploy(&self, name: &str, bytes: Vec<u8>) -> Result<Reply> {
        let req = self.auth(self.agent.put(self.url(&format!("/v1/modules/{name}"))));
        self.finish(
            req.header("content-type", "application/wasm")
                .send(&bytes[..]),
        )
    }

    /// `POST /v1/actors/{target}` with a JSON body, waiting up to `wait` for the reply.
    pub fn call(&self, target: &str, json: &str, wait: Option<Duration>) -> Result<Reply> {
        let mut req = self
            .auth(self.agent.post(self.url(&format!("/v1/actors/{target}"))))
            .header("content-type", "application/json");
        if let Some(w) = wait {
            req = req.header("prefer", format!("wait={}", w.as_secs_f64()));
        }
        self.finish(req.send(json))
    }

    /// `POST /v1/actors/{target}/events` with a JSON body.
    pub fn send(&self, target: &str, json: &str) -> Result<Reply> {
        self.post_json(&format!("/v1/actors/{target}/events"), json)
    }

    /// `GET`, long-polling up to `wait` where the API supports it.
    pub fn get(&self, path: &str, wait: Option<Duration>) -> Result<Reply> {
        let mut req = self.auth(self.agent.get(self.url(path)));
        if let Some(w) = wait {
            req = req.header("prefer", format!("wait={}", w.as_secs_f64()));
        }
        self.finish(req.call())
    }

    /// `POST` a JSON document.
    pub fn post_json(&self, path: &str, json: &str) -> Result<Reply> {
        let req = self.auth(self.agent.post(self.url(path)));
        self.finish(req.header("content-type", "application/json").send(json))
    }

    /// `PATCH` with a JSON document.
    pub fn patch_json(&self, path: &str, json: &str) -> Result<Reply> {
        let req = self.auth(self.agent.patch(self.url(path)));
        self.finish(req.header("content-type", "application/json").send(json))
    }

    pub fn delete(&self, path: &str) -> Result<Reply> {
        self.finish(self.auth(self.agent.delete(self.url(path))).call())
    }
}

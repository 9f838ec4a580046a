//! The HTTP client side: one server incarnation's address and the tenant key, and the
//! few requests the tool makes. Every answer comes back as status, headers and body;
//! a request that gets no answer (the server died, the connection broke) is an `Err`.

use std::time::Duration;

use serde_json::Value;

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub retry_after: Option<u64>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        t.chars().take(300).collect()
    }
}

/// A keep-alive client for one server incarnation.
pub struct Api {
    agent: ureq::Agent,
    pub base: String,
    bearer: String,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Api {
        Api {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .max_idle_connections_per_host(8)
                .build()
                .new_agent(),
            base: base.to_owned(),
            bearer: format!("Bearer {key}"),
        }
    }

    /// One request; `Err` when no answer came.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let url = format!("{}{}", self.base, path);
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", &self.bearer);
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let result = match body {
            Some(bytes) => self
                .agent
                .run(b.body(bytes.to_vec()).map_err(|e| e.to_string())?),
            None => self.agent.run(b.body(()).map_err(|e| e.to_string())?),
        };
        let mut resp = result.map_err(|e| e.to_string())?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("dwell-request-id");
        let retry_after = header("retry-after").and_then(|v| v.trim().parse().ok());
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Answer {
            status,
            request_id,
            retry_after,
            body,
        })
    }

    /// GET a JSON document: `Ok(None)` for 404.
    pub fn get_json(&self, path: &str) -> Result<Option<Value>, String> {
        let a = self.send("GET", path, &[], None)?;
        match a.status {
            200 => a
                .json()
                .map(Some)
                .ok_or_else(|| format!("GET {path}: not JSON: {}", a.text())),
            404 => Ok(None),
            s => Err(format!("GET {path}: {s} {}", a.text())),
        }
    }
}

//! Test harness: the e2e tests' view of a real `dwell` server — the binary started on
//! 127.0.0.1:0 with a temporary data directory (through `dwell-testkit`, which owns the
//! child process, the database per data directory, the guest build and polling) — and
//! HTTP to it with ureq, as the default tenant unless a test says otherwise.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dwell_testkit::{ServerOptions, ServerProcess};
use serde_json::Value;

pub use dwell_testkit::workspace_root;

/// The prefix of the suite's database names on PostgreSQL.
const DB_PREFIX: &str = "dwell_";

/// The PostgreSQL server the suite runs against (`DWELL_TEST_POSTGRES`, e.g.
/// `postgres://postgres@127.0.0.1:5432`; set by `scripts/test.sh`), if any.
pub fn test_postgres() -> Option<String> {
    std::env::var("DWELL_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The example guests, built once per test run for wasm32-wasip2.
pub fn guest(name: &str) -> PathBuf {
    dwell_testkit::guest(crate::GUESTS, name).unwrap_or_else(|e| panic!("guest {name}: {e}"))
}

pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("read guest")
}

/// A running `dwell serve`; dropping it kills the process.
pub struct Server {
    /// Declared first: the process is killed before the data directory is removed.
    process: ServerProcess,
    /// The base URL of the current start (a restart gets a new port).
    pub base: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    agent: ureq::Agent,
    /// The default tenant's key, read from the data directory after the first start.
    pub key: String,
    /// The admin key (generated into the data directory unless given in the env).
    pub admin_key: String,
    /// Every line the server printed on stdout, over all its starts.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

pub struct Resp {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Assert an RFC 9457 problem document with `status`.
    pub fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "error bodies are problem+json"
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        assert!(p["type"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(p["detail"].as_str().is_some_and(|t| !t.is_empty()));
        p
    }
}

impl Server {
    /// Start with a fresh data directory and extra `serve` arguments.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Start with extra environment variables for the server process.
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        Self::start_at(data, Some(tmp), args, envs)
    }

    /// Start with the data directory `data` (which the caller cleans up).
    pub fn start_in(data: &Path, args: &[&str]) -> Server {
        Self::start_at(data.to_owned(), None, args, &[])
    }

    fn start_at(
        data: PathBuf,
        tmp: Option<tempfile::TempDir>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        let binary = std::env::var_os("DWELL_BIN")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dwell")), PathBuf::from);
        let mut options = ServerOptions::new(binary, &data);
        // Next to the data directory, not in it: tests look at what the server keeps.
        options.log = data.with_extension("log");
        options.args = args.iter().map(|s| s.to_string()).collect();
        options.env_remove = vec!["DWELL_ADMIN_KEY".into()];
        options.env = [("DWELL_LOG", "info,wasmtime=warn,cranelift=warn")]
            .iter()
            .chain(envs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // The suite's backend, unless the test chose a store itself.
        if let Some(pg) = test_postgres() {
            options
                .store_on_postgres(&pg, DB_PREFIX)
                .unwrap_or_else(|e| panic!("the test PostgreSQL: {e}"));
        }
        let process = ServerProcess::start(options).unwrap_or_else(|e| panic!("{e}"));
        Server {
            base: process.base().to_owned(),
            data,
            _tmp: tmp,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .max_idle_connections_per_host(64)
                .build()
                .new_agent(),
            key: process
                .key()
                .expect("the default tenant's key is written at first start"),
            admin_key: process.admin_key().expect("admin.key"),
            stdout: process.stdout().clone(),
            process,
        }
    }

    /// The PostgreSQL URL of this server's database, when the suite runs on PostgreSQL.
    pub fn postgres_url(&self) -> Option<String> {
        let pg = test_postgres()?;
        Some(
            dwell_testkit::database_url(&pg, DB_PREFIX, &self.data)
                .unwrap_or_else(|e| panic!("the test PostgreSQL: {e}")),
        )
    }

    /// Every byte the server keeps at rest: the redb file, or on PostgreSQL every column
    /// of every row of its database (bytea as its bytes, text as UTF-8).
    pub fn data_at_rest(&self) -> Vec<u8> {
        let Some(store) = self.postgres_url() else {
            return std::fs::read(self.data.join("dwell.redb")).expect("the data file");
        };
        let mut db = postgres::Client::connect(&store, postgres::NoTls).expect("connect");
        let tables: Vec<String> = db
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                &[],
            )
            .expect("list the tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::new();
        for t in tables {
            for row in db.query(&format!("SELECT * FROM {t}"), &[]).expect("read") {
                for i in 0..row.len() {
                    if let Ok(Some(b)) = row.try_get::<_, Option<Vec<u8>>>(i) {
                        out.extend(b);
                    } else if let Ok(Some(s)) = row.try_get::<_, Option<String>>(i) {
                        out.extend(s.into_bytes());
                    }
                    out.push(0);
                }
            }
        }
        assert!(!out.is_empty(), "the database holds the server's data");
        out
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid().expect("the server is running")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGKILL the server while other threads still hold `&self` (they see the
    /// connection fail); `restart` reaps it.
    pub fn kill_now(&self) {
        self.process.kill_now();
    }

    /// SIGKILL the server (no shutdown path runs).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM the server and wait for it to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let stopped = self.process.stop(Duration::from_secs(30));
        stopped.exit.is_some_and(|s| s.success())
    }

    /// Start again on the same data directory (after `kill` or `terminate`).
    pub fn start_again(&mut self) {
        self.restart();
    }

    /// Start again on the same data directory (killing it first if it still runs).
    pub fn restart(&mut self) {
        self.process.restart().unwrap_or_else(|e| panic!("{e}"));
        self.base = self.process.base().to_owned();
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A request that may fail on the wire (the server was killed): the error instead.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let url = format!("{}{}", self.base, path);
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        // As the default tenant, unless the caller brings its own `authorization`
        // (an empty one sends none).
        let own_auth = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        if !own_auth {
            b = b.header("authorization", format!("Bearer {}", self.key));
        }
        for (k, v) in headers {
            if !v.is_empty() {
                b = b.header(*k, *v);
            }
        }
        let result = match body {
            Some(bytes) => self.agent.run(b.body(bytes.to_vec()).expect("request")),
            None => self.agent.run(b.body(()).expect("request")),
        };
        let mut resp = result.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_default();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    pub fn post_json(&self, path: &str, json: &Value, headers: &[(&str, &str)]) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request("POST", path, &h, Some(json.to_string().as_bytes()))
    }

    pub fn deploy(&self, name: &str, guest_name: &str) -> Value {
        let r = self.request(
            "PUT",
            &format!("/v1/modules/{name}"),
            &[("content-type", "application/wasm")],
            Some(&guest_bytes(guest_name)),
        );
        assert!(
            r.status == 201 || r.status == 200,
            "deploy {name}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    pub fn call(&self, module: &str, key: &str, json: Value) -> Resp {
        self.post_json(&format!("/v1/actors/{module}/{key}"), &json, &[])
    }

    pub fn event(&self, module: &str, key: &str, json: Value) -> Resp {
        self.post_json(&format!("/v1/actors/{module}/{key}/events"), &json, &[])
    }

    /// Create tenant `name` (admin key) with one API key; returns the key.
    pub fn new_tenant(&self, name: &str) -> String {
        let admin = format!("Bearer {}", self.admin_key);
        let r = self.post_json(
            "/v1/tenants",
            &serde_json::json!({"name": name}),
            &[("authorization", &admin)],
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let k = self.post_json(
            &format!("/v1/tenants/{name}/keys"),
            &serde_json::json!({}),
            &[("authorization", &admin)],
        );
        k.json()["key"].as_str().unwrap().to_owned()
    }

    pub fn actor(&self, module: &str, key: &str) -> Resp {
        self.get(&format!("/v1/actors/{module}/{key}"))
    }

    /// Poll `check` until it returns `Some`, or panic after `timeout`.
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        what: &str,
        check: impl FnMut() -> Option<T>,
    ) -> T {
        dwell_testkit::eventually(timeout, check)
            .unwrap_or_else(|| panic!("timed out waiting for {what}; server log:\n{}", self.log()))
    }
}

//! Test harness: builds the example guests, starts the real `dwell` binary on
//! 127.0.0.1:0 with a temporary data directory, and speaks HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The PostgreSQL server the suite runs against (`DWELL_TEST_POSTGRES`, e.g.
/// `postgres://postgres@127.0.0.1:5432`; set by `scripts/test.sh`), if any.
pub fn test_postgres() -> Option<String> {
    std::env::var("DWELL_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// `--store URL` for a server on `data` when the suite runs on PostgreSQL: one database
/// per data directory (so a restart on the same directory finds its state), created on
/// first use.
fn postgres_store(data: &Path) -> Vec<String> {
    let Some(base) = test_postgres() else {
        return Vec::new();
    };
    // FNV-1a of the path: a stable, valid database name.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    let db = format!("dwell_{h:016x}");
    let base = base.trim_end_matches('/');
    let mut admin = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .expect("connect to the test PostgreSQL");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .expect("look for the database")
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .expect("create the test database");
    }
    vec!["--store".into(), format!("{base}/{db}")]
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dwell/ has a parent")
        .to_path_buf()
}

/// The example guests, built once per test run for wasm32-wasip2.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("guests");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target)
            .args(crate::GUESTS.iter().flat_map(|g| ["-p", g]))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo to build the example guests");
        assert!(status.success(), "building the example guests failed");
        target.join("wasm32-wasip2").join("guest")
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("read guest")
}

/// A running `dwell serve`.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
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
        let mut s = Server {
            child: None,
            base: String::new(),
            data,
            _tmp: tmp,
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            key: String::new(),
            admin_key: String::new(),
            stdout: Arc::default(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .max_idle_connections_per_host(64)
                .build()
                .new_agent(),
        };
        s.spawn();
        s.key = std::fs::read_to_string(s.data.join("default-tenant.key"))
            .expect("the default tenant's key is written at first start")
            .trim()
            .to_owned();
        s.admin_key = match envs.iter().find(|(k, _)| *k == "DWELL_ADMIN_KEY") {
            Some((_, v)) => v.to_string(),
            None => std::fs::read_to_string(s.data.join("admin.key"))
                .expect("admin.key")
                .trim()
                .to_owned(),
        };
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .expect("log file");
        let mut child = Command::new(
            std::env::var_os("DWELL_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_dwell").into()),
        )
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&self.data)
        .args(self.store_args())
        .args(&self.args)
        .env("DWELL_LOG", "info,wasmtime=warn,cranelift=warn")
        .env_remove("DWELL_ADMIN_KEY")
        .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start dwell");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = self.stdout.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(addr) = line.strip_prefix("dwell listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
                printed.lock().unwrap().push(line);
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("dwell did not start; log:\n{}", self.log()));
        self.base = base;
        self.child = Some(child);
    }

    /// `--store` for the suite's backend, unless the test chose a store itself.
    fn store_args(&self) -> Vec<String> {
        if self.args.iter().any(|a| a == "--store") {
            return Vec::new();
        }
        postgres_store(&self.data)
    }

    /// The PostgreSQL URL of this server's database, when the suite runs on PostgreSQL.
    pub fn postgres_url(&self) -> Option<String> {
        postgres_store(&self.data).pop()
    }

    /// Every byte the server keeps at rest: the redb file, or on PostgreSQL every column
    /// of every row of its database (bytea as its bytes, text as UTF-8).
    pub fn data_at_rest(&self) -> Vec<u8> {
        let Some(store) = postgres_store(&self.data).pop() else {
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
        self.child.as_ref().expect("the server is running").id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// SIGKILL the server while other threads still hold `&self` (they see the
    /// connection fail); `restart` reaps it.
    pub fn kill_now(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL the server (no shutdown path runs).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the server and wait for it to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same data directory (after `kill` or `terminate`).
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Start again on the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
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

    pub fn actor(&self, module: &str, key: &str) -> Resp {
        self.get(&format!("/v1/actors/{module}/{key}"))
    }

    /// Poll `check` until it returns `Some`, or panic after `timeout`.
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; server log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

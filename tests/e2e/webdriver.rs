//! A small W3C WebDriver client for the console tests: Debian's `chromedriver` started as
//! a child process on a free loopback port, one headless Chromium session driven over
//! HTTP with ureq, screenshots saved as PNG under `target/console-screenshots/`.
//!
//! Chromium and chromedriver must be installed (`apt-get install chromium
//! chromium-driver`, as `.ci/run` does); without them a test fails and says so, unless
//! `DWELL_SKIP_BROWSER=1` asks to skip the browser tests. One browser runs at a time
//! (they are heavy on a small machine). Dropping a [`Browser`] ends the session and
//! kills chromedriver by its pid, also when the test panics (after a last screenshot).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a `wait_*` keeps trying.
pub const WAIT: Duration = Duration::from_secs(15);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Browser {
    /// The test's name, the prefix of its screenshots.
    name: String,
    base: String,
    session: Option<String>,
    agent: ureq::Agent,
    driver: Child,
    shots: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

/// The Chromium binary (`DWELL_CHROMIUM` or Debian's `/usr/bin/chromium`).
fn chromium() -> PathBuf {
    std::env::var_os("DWELL_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// `chromedriver` on the PATH.
fn chromedriver() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromedriver"))
        .find(|p| p.is_file())
}

impl Browser {
    /// A headless Chromium for the test `name`; `None` only when `DWELL_SKIP_BROWSER=1`.
    pub fn start(name: &str) -> Option<Browser> {
        if std::env::var("DWELL_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!("{name}: skipped, DWELL_SKIP_BROWSER=1");
            return None;
        }
        let chromium = chromium();
        let driver = chromedriver();
        let (Some(driver), true) = (driver, chromium.is_file()) else {
            panic!(
                "the console tests need Chromium ({}) and chromedriver on the PATH: install \
                 them with `apt-get install -y chromium chromium-driver` (as .ci/run does), or \
                 set DWELL_SKIP_BROWSER=1 to skip the browser tests",
                chromium.display()
            );
        };
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let shots = crate::harness::workspace_root()
            .join("target")
            .join("console-screenshots");
        std::fs::create_dir_all(&shots).expect("the screenshot folder");
        // A free port: chromedriver takes a port number, not a listener.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(shots.join(format!("{name}.chromedriver.log")))
            .expect("the chromedriver log");
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
        let mut browser = Browser {
            name: name.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .new_agent(),
            driver: child,
            shots,
            _turn: turn,
        };
        let ready = dwell_testkit::eventually(Duration::from_secs(20), || {
            let status = browser.call("GET", "/status", None).ok()?;
            (status["ready"] == true).then_some(())
        });
        assert!(
            ready.is_some(),
            "chromedriver did not become ready on port {port}"
        );
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--no-first-run", "--lang=en-US"],
            },
        }}});
        let session = browser
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("a Chromium session: {e}"));
        browser.session = Some(
            session["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        );
        Some(browser)
    }

    /// One WebDriver command: its `value`, or the error WebDriver answered.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json");
        let result = match body {
            Some(b) => self
                .agent
                .run(req.body(b.to_string().into_bytes()).expect("request")),
            None if method == "POST" => self.agent.run(req.body(b"{}".to_vec()).expect("request")),
            None => self.agent.run(req.body(()).expect("request")),
        };
        let mut resp = result.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status != 200 {
            return Err(format!(
                "{method} {path}: {status} {} {}",
                v["value"]["error"], v["value"]["message"]
            ));
        }
        Ok(v["value"].clone())
    }

    /// A command in the session.
    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let id = self.session.as_deref().expect("a session");
        self.call(method, &format!("/session/{id}{path}"), body)
    }

    /// Load a page and wait for it.
    pub fn goto(&self, url: &str) {
        self.session("POST", "/url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The address bar.
    pub fn url(&self) -> String {
        self.session("GET", "/url", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The elements matching a CSS selector, now.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.session(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        match found {
            Ok(Value::Array(els)) => els
                .iter()
                .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The first element matching `css`, waiting for one to appear.
    pub fn wait_for(&self, css: &str) -> String {
        self.until(&format!("an element {css:?}"), || {
            self.find_all(css).into_iter().next()
        })
    }

    /// Wait until nothing matches `css`.
    pub fn wait_gone(&self, css: &str) {
        self.until(&format!("no element {css:?}"), || {
            self.find_all(css).is_empty().then_some(())
        })
    }

    /// The visible text of an element (empty for one that is not shown).
    pub fn text(&self, element: &str) -> Option<String> {
        self.session("GET", &format!("/element/{element}/text"), None)
            .ok()?
            .as_str()
            .map(str::to_owned)
    }

    /// Wait until the first element matching `css` shows text containing `needle`;
    /// its whole text.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        self.until(&format!("{css:?} to show {needle:?}"), || {
            let text = self.text(self.find_all(css).first()?)?;
            text.contains(needle).then_some(text)
        })
    }

    /// Wait until the first element matching `css` shows no text containing `needle`.
    pub fn until_text_lacks(&self, css: &str, needle: &str) {
        self.until(&format!("{css:?} to stop showing {needle:?}"), || {
            let text = self.text(self.find_all(css).first()?)?;
            (!text.contains(needle)).then_some(())
        })
    }

    /// Click the first element matching `css` (waiting for it).
    pub fn click(&self, css: &str) {
        self.until(&format!("a click on {css:?}"), || {
            let el = self.find_all(css).into_iter().next()?;
            self.session("POST", &format!("/element/{el}/click"), None)
                .ok()
        });
    }

    /// Clear the first field matching `css` and type `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        self.until(&format!("typing into {css:?}"), || {
            let el = self.find_all(css).into_iter().next()?;
            self.session("POST", &format!("/element/{el}/clear"), None)
                .ok()?;
            self.session(
                "POST",
                &format!("/element/{el}/value"),
                Some(json!({ "text": text })),
            )
            .ok()
        });
    }

    /// Run JavaScript in the page (`arguments` are `args`); its return value.
    pub fn script(&self, body: &str, args: Value) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": args})),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Run asynchronous JavaScript: it calls `arguments[arguments.length - 1]` with its
    /// result.
    pub fn script_async(&self, body: &str, args: Value) -> Value {
        self.session(
            "POST",
            "/execute/async",
            Some(json!({"script": body, "args": args})),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Scroll the first element matching `css` into view (for the next screenshot).
    pub fn scroll_to(&self, css: &str) {
        self.wait_for(css);
        self.script(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'center'})",
            json!([css]),
        );
    }

    /// Save a screenshot as `target/console-screenshots/<test>-<step>.png`.
    pub fn screenshot(&self, step: &str) -> PathBuf {
        let path = self.shots.join(format!("{}-{step}.png", self.name));
        let png = self
            .session("GET", "/screenshot", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
        if let Some(png) = png {
            assert!(png.starts_with(b"\x89PNG"), "a PNG");
            std::fs::write(&path, png).expect("write the screenshot");
        }
        path
    }

    fn until<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        dwell_testkit::eventually(WAIT, check).unwrap_or_else(|| {
            let shot = self.screenshot("timeout");
            let body = self
                .session(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": "return document.body.innerText", "args": []})),
                )
                .unwrap_or_default();
            panic!(
                "timed out waiting for {what} on {}; screenshot {}; the page says:\n{}",
                self.url(),
                shot.display(),
                body.as_str().unwrap_or("")
            )
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.session.is_some() {
            if std::thread::panicking() {
                self.screenshot("failure");
            }
            // Closes Chromium; then chromedriver, by its pid.
            let _ = self.session("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

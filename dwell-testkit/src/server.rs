//! The `dwell serve` child process: started from [`ServerOptions`] on `127.0.0.1:0` with a
//! data directory, ready once it printed `dwell listening on <base>`; its keys, pid, log
//! and stdout; stopped with SIGTERM and a grace period, killed at once, or restarted on
//! the same data directory (on a new port). Its stderr — the log — is appended to
//! [`ServerOptions::log`]; every line of its stdout is kept, over all its starts, in
//! [`ServerProcess::stdout`].
//!
//! Invariant: `ServerProcess::child` is `Some` only while that process has not been
//! reaped, so a pid this module signals is always its own child's (the pid of a reaped
//! process could already belong to another one). Nothing else is ever signalled.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the server prints on stdout once it accepts connections, before its base URL.
const LISTENING: &str = "dwell listening on ";

/// How many lines of the log a start failure shows.
const TAIL_LINES: usize = 40;

/// How often a stop looks whether the process has exited (the benchmark times stops).
const STOP_POLL: Duration = Duration::from_millis(5);

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the server log {path}: {source}")]
    Log { path: PathBuf, source: io::Error },
    #[error("starting {binary}: {source}")]
    Spawn { binary: PathBuf, source: io::Error },
    #[error("the server did not report its address ({why}); its log ends:\n{log_tail}")]
    NotListening { why: String, log_tail: String },
}

/// How to start `dwell serve`: `<binary> serve --listen 127.0.0.1:0 --data <data> <args>`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The `dwell` binary.
    pub binary: PathBuf,
    /// The data directory (`--data`); the server creates it when missing.
    pub data: PathBuf,
    /// More `serve` arguments, after `--data`.
    pub args: Vec<String>,
    /// Variables removed from the environment the server inherits (before `env`).
    pub env_remove: Vec<String>,
    /// Variables set for the server, in order: a later one wins.
    pub env: Vec<(String, String)>,
    /// The file the server's stderr (its log) is appended to; default `<data>/server.log`.
    pub log: PathBuf,
    /// How long a start waits for the address line; default 120 s (a debug build on a
    /// busy machine compiles its guests at start).
    pub start_timeout: Duration,
}

impl ServerOptions {
    pub fn new(binary: impl Into<PathBuf>, data: impl Into<PathBuf>) -> ServerOptions {
        let data = data.into();
        ServerOptions {
            binary: binary.into(),
            log: data.join("server.log"),
            data,
            args: Vec::new(),
            env_remove: Vec::new(),
            env: Vec::new(),
            start_timeout: Duration::from_secs(120),
        }
    }

    /// Run on PostgreSQL: `--store` the database of this data directory on the server
    /// at `server` (see [`crate::database_url`]), unless `args` already choose a store.
    pub fn store_on_postgres(
        &mut self,
        server: &str,
        prefix: &str,
    ) -> Result<(), crate::PostgresError> {
        if !self.args.iter().any(|a| a == "--store") {
            let url = crate::database_url(server, prefix, &self.data)?;
            self.args.extend(["--store".to_owned(), url]);
        }
        Ok(())
    }
}

/// How a [`ServerProcess::stop`] went.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// From the SIGTERM to the exit (or to the SIGKILL).
    pub took: Duration,
    /// The exit status; `None` when it was not running, or did not exit within the grace
    /// period and was killed.
    pub exit: Option<ExitStatus>,
}

/// A running (or stopped, restartable) `dwell serve`. Dropping it kills the process.
pub struct ServerProcess {
    options: ServerOptions,
    /// Not reaped while `Some` (the module's invariant).
    child: Option<Child>,
    base: String,
    listening_after: Duration,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Start the server; returns once it printed its address.
    pub fn start(options: ServerOptions) -> Result<ServerProcess, Error> {
        let mut server = ServerProcess {
            options,
            child: None,
            base: String::new(),
            listening_after: Duration::ZERO,
            stdout: Arc::default(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let o = &self.options;
        let log_error = |source| Error::Log {
            path: o.log.clone(),
            source,
        };
        if let Some(dir) = o.log.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(log_error)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&o.log)
            .map_err(log_error)?;
        let mut cmd = Command::new(&o.binary);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(&o.data)
            .args(&o.args);
        for k in &o.env_remove {
            cmd.env_remove(k);
        }
        cmd.envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let spawn_error = |source| Error::Spawn {
            binary: o.binary.clone(),
            source,
        };
        let t0 = Instant::now();
        let mut child = cmd.spawn().map_err(spawn_error)?;
        let Some(stdout) = child.stdout.take() else {
            reap(&mut child, Duration::ZERO);
            return Err(spawn_error(io::Error::other("no stdout pipe")));
        };
        let (tx, rx) = mpsc::channel();
        let lines = self.stdout.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let base = line.strip_prefix(LISTENING).map(|b| b.trim().to_owned());
                // Kept before the address is handed over: once `start` returns, every
                // line up to the address line is in `stdout`.
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
                if let Some(base) = base
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(base);
                }
            }
        });
        match rx.recv_timeout(o.start_timeout) {
            Ok(base) => {
                self.base = base;
                self.listening_after = t0.elapsed();
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let why = match e {
                    RecvTimeoutError::Timeout => {
                        reap(&mut child, Duration::ZERO);
                        format!("none within {:?}; killed", o.start_timeout)
                    }
                    // It closed its stdout: it is exiting.
                    RecvTimeoutError::Disconnected => match reap(&mut child, STOP_GRACE) {
                        Some(status) => format!("it exited: {status}"),
                        None => "it closed its stdout; killed".to_owned(),
                    },
                };
                Err(Error::NotListening {
                    why,
                    log_tail: self.log_tail(TAIL_LINES),
                })
            }
        }
    }

    /// Start again on the same data directory (and options), killing it first if it
    /// still runs. The base URL changes: a new port.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.spawn()
    }

    /// The base URL it printed, e.g. `http://127.0.0.1:41234` (`https://` with TLS).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The address it listens on, from [`ServerProcess::base`].
    pub fn addr(&self) -> Option<SocketAddr> {
        let (_, host) = self.base.split_once("://")?;
        host.trim_end_matches('/').parse().ok()
    }

    /// From the spawn to the address line, at the last start.
    pub fn listening_after(&self) -> Duration {
        self.listening_after
    }

    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    pub fn data(&self) -> &Path {
        &self.options.data
    }

    /// The `default` tenant's API key, `<data>/default-tenant.key` (written at the
    /// first start, before the address is printed).
    pub fn key(&self) -> Option<String> {
        read_key(&self.options.data.join("default-tenant.key"))
    }

    /// The admin key: `DWELL_ADMIN_KEY` when the options set it, else the one the
    /// server generated into `<data>/admin.key`.
    pub fn admin_key(&self) -> Option<String> {
        match self
            .options
            .env
            .iter()
            .rfind(|(k, _)| k == "DWELL_ADMIN_KEY")
        {
            Some((_, v)) => Some(v.clone()),
            None => read_key(&self.options.data.join("admin.key")),
        }
    }

    /// The process id, while it has not been stopped, killed or seen exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process still runs (an exited one is reaped here).
    pub fn is_running(&mut self) -> bool {
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !running {
            self.child = None;
        }
        running
    }

    /// Every line it printed on stdout, over all its starts; shared with the reader
    /// threads, so a clone of it sees the lines of later starts too.
    pub fn stdout(&self) -> &Arc<Mutex<Vec<String>>> {
        &self.stdout
    }

    /// Its log so far (every start's).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.options.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then wait up to `grace` for the exit; SIGKILL after that.
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        let t0 = Instant::now();
        let Some(mut child) = self.child.take() else {
            return Stopped {
                took: Duration::ZERO,
                exit: None,
            };
        };
        if let Ok(None) = child.try_wait() {
            signal(child.id(), libc::SIGTERM);
        }
        let exit = reap(&mut child, grace);
        Stopped {
            took: t0.elapsed(),
            exit,
        }
    }

    /// SIGKILL and reap it: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            reap(&mut child, Duration::ZERO);
        }
    }

    /// SIGKILL it while other threads still hold `&self` (they see their connections
    /// fail); [`ServerProcess::restart`] or [`ServerProcess::kill`] reaps it.
    pub fn kill_now(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), libc::SIGKILL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a server that closed its stdout at start gets to exit by itself.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Wait up to `grace` for `child` to exit; SIGKILL it after that. Its exit status, or
/// `None` when it had to be killed. Reaps it either way.
fn reap(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(STOP_POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Send `sig` to `pid`, a child of ours that has not been reaped (the module's
/// invariant), so the pid cannot have been reused by another process.
#[allow(unsafe_code)]
fn signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, sig) == 0 }
}

fn read_key(path: &Path) -> Option<String> {
    let key = std::fs::read_to_string(path).ok()?;
    Some(key.trim().to_owned())
}

#[cfg(test)]
mod tests {
    //! The process handling on stand-in servers (shell scripts), without building dwell.

    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::OnceLock;

    use super::*;

    /// The stand-ins, all written before the first one runs: a file still open for
    /// writing in one thread while another forks cannot be executed (ETXTBSY).
    fn stand_in(name: &str) -> PathBuf {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        let dir = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let scripts = [
                // Prints its address; exits 0 on SIGTERM.
                (
                    "serves",
                    "trap 'kill $!; echo bye >&2; exit 0' TERM\n\
                     echo 'starting' >&2\n\
                     echo 'hello'\n\
                     echo 'dwell listening on http://127.0.0.1:4321'\n\
                     sleep 30 & wait\n",
                ),
                ("fails", "echo 'boom: no such store' >&2\nexit 3\n"),
                ("silent", "exec sleep 30\n"),
            ];
            for (name, body) in scripts {
                let path = dir.path().join(name);
                std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            dir
        });
        dir.path().join(name)
    }

    fn options(script: &str) -> (tempfile::TempDir, ServerOptions) {
        let data = tempfile::tempdir().expect("tempdir");
        let options = ServerOptions::new(stand_in(script), data.path().join("data"));
        (data, options)
    }

    #[test]
    fn a_started_server_has_its_address_stdout_and_log_and_stops_on_sigterm() {
        let (_dir, options) = options("serves");
        let mut server = ServerProcess::start(options).expect("start");
        assert_eq!(server.base(), "http://127.0.0.1:4321");
        assert_eq!(server.addr(), Some("127.0.0.1:4321".parse().unwrap()));
        assert!(server.is_running());
        assert!(server.pid().is_some());
        let lines = server.stdout().lock().unwrap().clone();
        assert_eq!(lines, ["hello", "dwell listening on http://127.0.0.1:4321"]);
        let stopped = server.stop(Duration::from_secs(10));
        assert!(stopped.exit.is_some_and(|s| s.success()), "{stopped:?}");
        assert!(!server.is_running());
        assert!(
            server.log().starts_with("starting\nbye"),
            "{}",
            server.log()
        );

        server.restart().expect("restart");
        assert!(server.is_running());
        assert_eq!(
            server.stdout().lock().unwrap().len(),
            4,
            "both starts' lines"
        );
        server.kill_now();
        let stopped = server.stop(Duration::from_secs(10));
        assert!(stopped.exit.is_some_and(|s| !s.success()), "SIGKILLed");
    }

    #[test]
    fn a_server_that_exits_at_start_is_an_error_with_its_log() {
        let (_dir, options) = options("fails");
        let e = ServerProcess::start(options).err().expect("fails");
        let text = e.to_string();
        assert!(text.contains("it exited"), "{text}");
        assert!(text.contains("boom: no such store"), "{text}");
    }

    #[test]
    fn a_server_that_never_prints_its_address_is_killed_after_the_timeout() {
        let (_dir, mut options) = options("silent");
        options.start_timeout = Duration::from_millis(200);
        let t0 = Instant::now();
        let e = ServerProcess::start(options).err().expect("times out");
        assert!(matches!(e, Error::NotListening { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_admin_key_comes_from_the_environment_when_given() {
        let (_dir, mut options) = options("serves");
        options.env.push(("DWELL_ADMIN_KEY".into(), "k-1".into()));
        let server = ServerProcess::start(options).expect("start");
        assert_eq!(server.admin_key().as_deref(), Some("k-1"));
        assert_eq!(server.key(), None, "the stand-in writes no key files");
    }
}

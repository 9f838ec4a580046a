//! The `dwell serve` processes the tool starts: one at a time, always on the same data
//! directory, on a fresh `127.0.0.1:0` port each time. Its stdout is read for the
//! "dwell listening on" line; its stderr (the log) is appended to `<dir>/server.log`.
//! Only the child this module started is ever signalled, by its pid (`Child::kill` is
//! SIGKILL on Unix; SIGTERM goes through `kill -TERM <pid>`).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

/// How one incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Our SIGKILL ended it.
    Killed,
    /// It had already exited by itself before we killed it (a crash).
    ExitedBefore(Option<i32>, Option<i32>),
}

pub struct Dwell {
    bin: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    listening: Option<Receiver<String>>,
    pub starts: u64,
}

impl Dwell {
    pub fn new(bin: &Path, dir: &Path, args: Vec<String>) -> Dwell {
        Dwell {
            bin: bin.to_owned(),
            data: dir.join("data"),
            log: dir.join("server.log"),
            args,
            child: None,
            listening: None,
            starts: 0,
        }
    }

    /// Start a new incarnation; it is not serving until [`Dwell::wait_listening`] says so.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("a dwell is still running");
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        writeln!(log, "---- dwell-chaos: start {} ----", self.starts)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(&self.data)
            .args(&self.args)
            .env("DWELL_LOG", "info,wasmtime=warn,cranelift=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("DWELL_") && k != "DWELL_LOG" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("dwell listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        self.child = Some(child);
        self.listening = Some(rx);
        Ok(())
    }

    /// The base URL once the incarnation prints "dwell listening on"; `Ok(None)` if it has
    /// not within `timeout`.
    pub fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<Option<String>> {
        let rx = self
            .listening
            .as_ref()
            .ok_or_else(|| anyhow!("dwell is not running"))?;
        match rx.recv_timeout(timeout) {
            Ok(addr) => Ok(Some(if addr.starts_with("http") {
                addr
            } else {
                format!("http://{addr}")
            })),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                bail!(
                    "dwell exited before listening ({status:?}); see {}",
                    self.log.display()
                )
            }
        }
    }

    /// SIGKILL the incarnation (by its pid) and reap it.
    pub fn kill(&mut self) -> anyhow::Result<Ended> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("nothing to kill"))?;
        self.listening = None;
        if let Some(status) = child.try_wait()? {
            return Ok(Ended::ExitedBefore(status.code(), status.signal()));
        }
        child.kill()?;
        let status = child.wait()?;
        Ok(match status.signal() {
            Some(9) => Ended::Killed,
            _ => Ended::ExitedBefore(status.code(), status.signal()),
        })
    }

    /// Send SIGTERM (by pid) without waiting: a clean stop begins.
    pub fn sigterm(&mut self) -> anyhow::Result<()> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("nothing to stop"))?;
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        Ok(())
    }

    /// SIGTERM the incarnation and wait up to `timeout` for it to exit; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("nothing to stop"))?;
        self.listening = None;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dwell {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

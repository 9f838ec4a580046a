//! The server child process: starting `dwell serve` on a free loopback port, its
//! memory, deploying guests, and stopping it with SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use crate::Args;
use crate::client::{ClientKind, Target};
use crate::util::{body_text, proc_status_kb};

pub(crate) struct Server {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    /// The `default` tenant's API key (`<data>/default-tenant.key`).
    key: Option<Arc<str>>,
}

/// SIGTERM to a child of ours. The child has not been reaped (we still hold its `Child`),
/// so its pid cannot have been reused.
#[allow(unsafe_code)]
fn sigterm(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
}

impl Server {
    /// Start `dwell serve` on a free loopback port; returns once it printed its address.
    pub(crate) fn start(args: &Args, data: &Path) -> anyhow::Result<(Server, Duration)> {
        std::fs::create_dir_all(data)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("server.log"))?;
        let mut cmd = Command::new(&args.dwell);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .env("DWELL_LOG", &args.server_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(w) = args.http_workers {
            cmd.arg("--http-workers").arg(w.to_string());
        }
        if let Some(store) = crate::pg::store_for(args, data)? {
            cmd.arg("--store").arg(store);
        }
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", args.dwell.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().take(10_000) {
                let Ok(line) = line else { break };
                if !sent && let Some(a) = line.strip_prefix("dwell listening on http://") {
                    sent = tx.send(a.trim().to_owned()).is_ok();
                }
            }
        });
        let mut server = Server {
            child,
            pid,
            addr: "127.0.0.1:1".parse().expect("address"),
            key: None,
        };
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                bail!("the server did not report its address; its log ends:\n{tail}");
            }
        };
        let took = t0.elapsed();
        server.addr = addr.parse().with_context(|| format!("address {addr:?}"))?;
        if !server.addr.ip().is_loopback() {
            bail!("the server listens on {}, not loopback", server.addr);
        }
        // Written at the first start, before the address is printed.
        server.key = std::fs::read_to_string(data.join("default-tenant.key"))
            .ok()
            .map(|k| Arc::from(k.trim()));
        Ok((server, took))
    }

    pub(crate) fn target(&self, kind: ClientKind) -> Target {
        Target {
            addr: self.addr,
            kind,
            auth: self.key.clone(),
        }
    }

    pub(crate) fn rss_kb(&self) -> Option<u64> {
        proc_status_kb(self.pid, "VmRSS:")
    }

    pub(crate) fn hwm_kb(&self) -> Option<u64> {
        proc_status_kb(self.pid, "VmHWM:")
    }

    /// SIGTERM, then wait up to `grace` for the exit; SIGKILL after that.
    pub(crate) fn stop(
        &mut self,
        grace: Duration,
    ) -> anyhow::Result<(Duration, Option<ExitStatus>)> {
        let t0 = Instant::now();
        if let Some(st) = self.child.try_wait()? {
            return Ok((Duration::ZERO, Some(st)));
        }
        sigterm(self.pid);
        while t0.elapsed() < grace {
            if let Some(st) = self.child.try_wait()? {
                return Ok((t0.elapsed(), Some(st)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok((t0.elapsed(), None))
    }

    pub(crate) fn deploy(&self, kind: ClientKind, name: &str, wasm: &[u8]) -> anyhow::Result<()> {
        let mut c = self.target(kind).client();
        let (status, body) = c
            .send(
                "PUT",
                &format!("/v1/modules/{name}"),
                "application/wasm",
                wasm,
            )
            .map_err(|e| anyhow!(e))?;
        if status != 200 && status != 201 {
            bail!("deploying {name}: {status} {}", body_text(&body));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop(Duration::from_secs(10));
        }
    }
}

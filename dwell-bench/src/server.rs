//! The server under load: a `dwell serve` child process started through `dwell-testkit`
//! (which owns starting, the address line, the keys and stopping) with the bench's own
//! options, its memory as `/proc` reports it, and deploying guests with the bench's own
//! client.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use dwell_testkit::{ServerOptions, ServerProcess};

use crate::Args;
use crate::client::{ClientKind, Target};
use crate::util::{body_text, proc_status_kb};

pub(crate) struct Server {
    process: ServerProcess,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    /// The `default` tenant's API key (`<data>/default-tenant.key`).
    key: Option<Arc<str>>,
}

impl Server {
    /// Start `dwell serve` on a free loopback port; returns once it printed its address,
    /// with the time from the spawn to that line. Its log goes to `<data>/server.log`.
    pub(crate) fn start(args: &Args, data: &Path) -> anyhow::Result<(Server, Duration)> {
        let store = crate::pg::store_for(args, data)?;
        Server::start_with(args, data, store, &[], &[])
    }

    /// [`Server::start`] on `store` (if any), with more arguments and environment.
    pub(crate) fn start_with(
        args: &Args,
        data: &Path,
        store: Option<String>,
        more: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<(Server, Duration)> {
        let mut options = ServerOptions::new(&args.dwell, data);
        options
            .env
            .push(("DWELL_LOG".into(), args.server_log.clone()));
        options.env.extend(env.iter().cloned());
        if let Some(w) = args.http_workers {
            options
                .args
                .extend(["--http-workers".into(), w.to_string()]);
        }
        options.args.extend(args.server_arg.iter().cloned());
        if let Some(store) = store {
            options.args.extend(["--store".into(), store]);
        }
        options.args.extend(more.iter().cloned());
        let process = ServerProcess::start(options)?;
        let addr = process
            .addr()
            .with_context(|| format!("address {:?}", process.base()))?;
        if !addr.ip().is_loopback() {
            bail!("the server listens on {addr}, not loopback");
        }
        let server = Server {
            pid: process.pid().context("the server exited")?,
            addr,
            key: process.key().map(Arc::from),
            process,
        };
        let took = server.process.listening_after();
        Ok((server, took))
    }

    pub(crate) fn target(&self, kind: ClientKind) -> Target {
        Target {
            addr: self.addr,
            kind,
            auth: self.key.clone(),
        }
    }

    /// The tenant key this server wrote into its data directory, if it made one.
    pub(crate) fn key(&self) -> Option<Arc<str>> {
        self.key.clone()
    }

    /// CPU time this process used so far.
    pub(crate) fn cpu(&self) -> Duration {
        crate::util::cpu_time(self.pid, false)
    }

    pub(crate) fn rss_kb(&self) -> Option<u64> {
        proc_status_kb(self.pid, "VmRSS:")
    }

    pub(crate) fn hwm_kb(&self) -> Option<u64> {
        proc_status_kb(self.pid, "VmHWM:")
    }

    /// SIGTERM, then wait up to `grace` for the exit; SIGKILL after that. The time it
    /// took, and the exit status unless it had to be killed.
    pub(crate) fn stop(&mut self, grace: Duration) -> (Duration, Option<ExitStatus>) {
        let stopped = self.process.stop(grace);
        (stopped.took, stopped.exit)
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
    /// A graceful stop (the kit's own drop would SIGKILL).
    fn drop(&mut self) {
        if self.process.is_running() {
            self.stop(Duration::from_secs(10));
        }
    }
}

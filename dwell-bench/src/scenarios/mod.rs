//! The scenarios and what they share: the run's context (`Bench`: arguments, guests, data
//! directories, the best rate of `sync`), the call body, and reply checks. One file per
//! scenario.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::Args;
use crate::client::ClientKind;
use crate::report::cpu_model;
use crate::util::{body_text, unix_ms};

mod cluster;
mod engine;
mod events;
mod hot;
mod idle;
mod rate;
mod sync;
mod timers;

pub(crate) use cluster::scenario_cluster;
pub(crate) use engine::scenario_engine;
pub(crate) use events::scenario_events;
pub(crate) use hot::scenario_hot;
pub(crate) use idle::scenario_idle;
pub(crate) use rate::scenario_rate;
pub(crate) use sync::scenario_sync;
pub(crate) use timers::scenario_timers;

pub(crate) const ADD_ONE: &[u8] = br#"{"add":1}"#;

pub(crate) struct Bench {
    pub(crate) args: Args,
    pub(crate) counter: Vec<u8>,
    pub(crate) ticker: Option<Vec<u8>>,
    pub(crate) cores: usize,
    pub(crate) dirs: Vec<PathBuf>,
    /// Best calls/s of `sync`, for `rate`.
    pub(crate) best_sync: Option<f64>,
}

impl Bench {
    fn size(&self, given: Option<u64>, quick: u64, full: u64) -> u64 {
        given.unwrap_or(if self.args.full { full } else { quick })
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.args.scenario_timeout_s)
    }

    pub(crate) fn fresh_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        let parent = self
            .args
            .data_parent
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!(
            "dwell-bench-{}-{}-{what}",
            std::process::id(),
            unix_ms()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// What every HTTP figure has in common (the rows add their own sizes).
    fn http_cond(&self) -> String {
        "HTTP".to_owned()
    }

    /// The conditions shared by every row, printed above the table.
    pub(crate) fn common_conditions(&self, fsync: &Value, during: &Value) -> String {
        let f = |k: &str| fsync.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let d = |k: &str| during.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        format!(
            "{} run on {} cores ({}); durability: redb `Durability::Immediate`, one fsync per \
             writer commit batch (group commit), 202/200 only after it; this disk's 4 KiB \
             fsync: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms before the run, p99 {:.2} ms and \
             max {:.2} ms during it (sampled every 100 ms). HTTP rows: `dwell serve` \
             (release) on 127.0.0.1, HTTP/1.1 keep-alive, one connection per load thread \
             ({} client), server `--http-workers` {}, `DWELL_LOG={}`, load generator on the \
             same machine; call/event body `{}` ({} B JSON).",
            if self.args.full { "Full" } else { "Quick" },
            self.cores,
            cpu_model().unwrap_or_else(|| "unknown CPU".into()),
            f("p50_ms"),
            f("p99_ms"),
            f("max_ms"),
            d("p99_ms"),
            d("max_ms"),
            match self.args.client {
                ClientKind::Raw => "a minimal raw",
                ClientKind::Ureq => "ureq",
            },
            self.args
                .http_workers
                .map_or("2 (default)".to_owned(), |w| w.to_string()),
            self.args.server_log,
            String::from_utf8_lossy(ADD_ONE),
            ADD_ONE.len(),
        )
    }
}

fn expect_202(r: Result<(u16, Vec<u8>), String>) -> Result<(), String> {
    match r? {
        (202, _) => Ok(()),
        (s, b) => Err(format!("{s} {}", body_text(&b))),
    }
}

/// The `total` of a counter reply.
fn reply_total(r: Result<(u16, Vec<u8>), String>) -> Result<i64, String> {
    match r? {
        (200, b) => serde_json::from_slice::<Value>(&b)
            .ok()
            .and_then(|v| v.get("total")?.as_i64())
            .ok_or_else(|| format!("200 without a total: {}", body_text(&b))),
        (s, b) => Err(format!("{s} {}", body_text(&b))),
    }
}

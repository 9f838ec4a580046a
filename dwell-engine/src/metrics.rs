//! Prometheus metrics: what an operator watches on a running node, as the Prometheus
//! text format (version 0.0.4) that `GET /metrics` serves (see `dwell-http`). The
//! registry is the engine's ([`Engine::metrics_text`](crate::Engine::metrics_text));
//! the HTTP layer only asks for the text.
//!
//! Cost on the hot path. A counter or a gauge is one atomic add. A histogram here is
//! [`Histogram`]: fixed buckets of atomics and a sum updated by compare-and-swap, with no
//! lock (prometheus-client's own histogram takes a mutex per observation). A turn's
//! counters are looked up by (tenant, module) once per runner, not per turn
//! ([`TurnCounters`]). What is cheaper to read than to track — messages in memory,
//! instances in use, timers loaded — is read when the metrics are scraped.
//!
//! Label cardinality is bounded: `tenant` and `module` (on the turn counter only) grow
//! with the tenants and modules deployed, every other label has a fixed set of values.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `dwell_turns_total` | counter | tenant, module, outcome | turns by outcome: `ok`, `refused` (a classified refusal answered to its caller), `dead_letter` |
//! | `dwell_turn_duration_seconds` | histogram | | one turn's execution (not counting the wait for a CPU slot) |
//! | `dwell_commit_batch_ops` | histogram | | operations in one write transaction (group commit) |
//! | `dwell_commit_duration_seconds` | histogram | | one write transaction: applying its operations and committing |
//! | `dwell_backend_commit_duration_seconds` | histogram | | the backend's commit alone (redb: commit + fsync; PostgreSQL: the batch's statement and COMMIT) |
//! | `dwell_ingress_in_flight_messages` | gauge | | calls and events admitted and not yet answered (bounded by `--ingress-messages`) |
//! | `dwell_inbox_messages` | gauge | | messages handed to runners in memory, waiting for their turn |
//! | `dwell_active_actors` | gauge | | actors with a runner |
//! | `dwell_timers_loaded` | gauge | | pending timers due within the next second, held by the timer worker |
//! | `dwell_mailbox_messages` | gauge | | unprocessed messages in all durable mailboxes (read from the store when scraped) |
//! | `dwell_timers_pending` | gauge | | pending durable timers of all actors (read from the store when scraped) |
//! | `dwell_outbox_pending` | gauge | | outbound calls and callbacks not yet delivered (read from the store when scraped) |
//! | `dwell_timer_lateness_seconds` | histogram | | how late a due timer was handed to its actor |
//! | `dwell_outbox_due` | gauge | | outbox deliveries due at the worker's last look (at most 1024) |
//! | `dwell_outbox_in_flight` | gauge | | outbox deliveries being attempted |
//! | `dwell_outbox_attempts_total` | counter | result | delivery attempts: `ok` (final answer), `retry`, `failed` (given up or refused) |
//! | `dwell_ingress_rejected_total` | counter | status | calls and events refused: `429` (tenant rate), `503` (node at capacity, storage unavailable) |
//! | `dwell_instances_in_use` | gauge | | Wasm instances running a turn |
//! | `dwell_instances_idle` | gauge | | idle instances in the warm pool |
//! | `dwell_cluster_partitions_held` | gauge | | partitions this cluster node holds (0 on a single node) |
//! | `dwell_cluster_serving` | gauge | | 1 while this cluster node takes work (its lease renewed within two thirds of it), else 0 |
//! | `dwell_cluster_fenced_commits_total` | counter | | commits refused because this node no longer held a partition they wrote, or stalled past half its lease |

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::domain::TurnResult;

/// Bucket bounds for durations, in seconds: 100 µs to 10 s.
pub const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Bucket bounds for operations per batch: powers of two up to the writer's `MAX_OPS`.
pub const OPS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];
/// Bucket bounds for timer lateness, in seconds: 1 ms to a minute.
pub const LATENESS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A histogram without a lock: one atomic counter per bucket (and one past the last
/// bound), the sum as `f64` bits updated by compare-and-swap. Cheap to clone (shared).
#[derive(Clone)]
pub struct Histogram(Arc<Buckets>);

struct Buckets {
    bounds: &'static [f64],
    /// `bounds.len() + 1` counters; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram(Arc::new(Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub fn observe(&self, v: f64) {
        let b = &self.0;
        let i = b
            .bounds
            .iter()
            .position(|&bound| v <= bound)
            .unwrap_or(b.bounds.len());
        b.counts[i].fetch_add(1, Relaxed);
        let _ = b.sum.fetch_update(Relaxed, Relaxed, |s| {
            Some((f64::from_bits(s) + v).to_bits())
        });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish()
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let b = &self.0;
        let buckets: Vec<(f64, u64)> = b
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(b.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(b.sum.load(Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A counter another part of the node keeps (here: the cluster placement's count of
/// fenced commits), copied in when scraped.
#[derive(Clone, Debug, Default)]
pub struct CopiedCounter(Arc<AtomicU64>);

impl CopiedCounter {
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
}

impl EncodeMetric for CopiedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0.load(Relaxed), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TurnLabels {
    tenant: String,
    module: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// The turn counters of one (tenant, module), resolved once by its runner.
#[derive(Clone)]
pub(crate) struct TurnCounters {
    ok: Counter,
    refused: Counter,
    dead_letter: Counter,
}

impl TurnCounters {
    /// Count a turn by what it commits.
    pub fn count(&self, result: &TurnResult) {
        match result {
            TurnResult::Done { .. } => self.ok.inc(),
            TurnResult::Refused { .. } => self.refused.inc(),
            TurnResult::DeadLetter { .. } => self.dead_letter.inc(),
        };
    }
}

/// The writer's histograms (made with the store, registered by the engine).
#[derive(Clone, Debug)]
pub struct WriterMetrics {
    pub batch_ops: Histogram,
    pub commit_seconds: Histogram,
    pub backend_commit_seconds: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            batch_ops: Histogram::new(OPS),
            commit_seconds: Histogram::new(SECONDS),
            backend_commit_seconds: Histogram::new(SECONDS),
        }
    }
}

/// What the engine counts, and the registry that encodes it.
pub(crate) struct Metrics {
    registry: Registry,
    turns: Family<TurnLabels, Counter>,
    pub turn_seconds: Histogram,
    pub timer_lateness: Histogram,
    pub outbox_attempts_ok: Counter,
    pub outbox_attempts_retry: Counter,
    pub outbox_attempts_failed: Counter,
    pub rejected_429: Counter,
    pub rejected_503: Counter,
    pub outbox_due: Gauge,
    pub outbox_in_flight: Gauge,
    // Set when scraped (see `Engine::metrics_text`).
    pub in_flight: Gauge,
    pub inbox: Gauge,
    pub active_actors: Gauge,
    pub timers_loaded: Gauge,
    pub mailbox: Gauge,
    pub timers_pending: Gauge,
    pub outbox_pending: Gauge,
    pub instances_in_use: Gauge,
    pub instances_idle: Gauge,
    pub partitions_held: Gauge,
    pub serving: Gauge,
    pub fenced_commits: CopiedCounter,
}

impl Metrics {
    pub fn new(writer: &WriterMetrics) -> Self {
        let mut registry = Registry::default();
        let turns = Family::<TurnLabels, Counter>::default();
        registry.register(
            "dwell_turns",
            "Turns committed, by tenant, module and outcome (ok, refused, dead_letter)",
            turns.clone(),
        );
        let turn_seconds = Histogram::new(SECONDS);
        registry.register(
            "dwell_turn_duration_seconds",
            "Execution time of one turn",
            turn_seconds.clone(),
        );
        registry.register(
            "dwell_commit_batch_ops",
            "Operations in one write transaction",
            writer.batch_ops.clone(),
        );
        registry.register(
            "dwell_commit_duration_seconds",
            "One write transaction, from its first operation to the end of its commit",
            writer.commit_seconds.clone(),
        );
        registry.register(
            "dwell_backend_commit_duration_seconds",
            "The backend's commit of one write transaction (redb: commit and fsync)",
            writer.backend_commit_seconds.clone(),
        );
        let timer_lateness = Histogram::new(LATENESS);
        registry.register(
            "dwell_timer_lateness_seconds",
            "How long after its due time a timer was handed to its actor",
            timer_lateness.clone(),
        );
        let attempts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "dwell_outbox_attempts",
            "Outbound HTTP call and callback attempts, by result (ok, retry, failed)",
            attempts.clone(),
        );
        let rejected = Family::<StatusLabel, Counter>::default();
        registry.register(
            "dwell_ingress_rejected",
            "Calls and events refused by status (429 tenant rate, 503 node at capacity)",
            rejected.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let outbox_due = gauge(
            "dwell_outbox_due",
            "Outbox deliveries due at the worker's last look (at most 1024)",
        );
        let outbox_in_flight = gauge("dwell_outbox_in_flight", "Outbox deliveries in progress");
        let in_flight = gauge(
            "dwell_ingress_in_flight_messages",
            "Calls and events admitted and not yet answered",
        );
        let inbox = gauge(
            "dwell_inbox_messages",
            "Messages handed to runners in memory, waiting for their turn",
        );
        let active_actors = gauge("dwell_active_actors", "Actors with a runner");
        let timers_loaded = gauge(
            "dwell_timers_loaded",
            "Pending timers due within the next second, held in memory",
        );
        let mailbox = gauge(
            "dwell_mailbox_messages",
            "Unprocessed messages in the durable mailboxes of all actors",
        );
        let timers_pending = gauge(
            "dwell_timers_pending",
            "Pending (set, not yet fired) durable timers of all actors",
        );
        let outbox_pending = gauge(
            "dwell_outbox_pending",
            "Outbound calls and callbacks not yet delivered (due or waiting to retry)",
        );
        let instances_in_use = gauge("dwell_instances_in_use", "Wasm instances running a turn");
        let instances_idle = gauge(
            "dwell_instances_idle",
            "Idle Wasm instances in the warm pool",
        );
        let partitions_held = gauge(
            "dwell_cluster_partitions_held",
            "Partitions this cluster node holds (0 on a single node)",
        );
        let serving = gauge(
            "dwell_cluster_serving",
            "1 while this cluster node takes work, else 0",
        );
        let fenced_commits = CopiedCounter::default();
        registry.register(
            "dwell_cluster_fenced_commits",
            "Commits refused because this node no longer held a partition they wrote",
            fenced_commits.clone(),
        );
        Metrics {
            partitions_held,
            serving,
            fenced_commits,
            turns,
            turn_seconds,
            timer_lateness,
            outbox_attempts_ok: attempts.get_or_create_owned(&ResultLabel { result: "ok" }),
            outbox_attempts_retry: attempts.get_or_create_owned(&ResultLabel { result: "retry" }),
            outbox_attempts_failed: attempts.get_or_create_owned(&ResultLabel { result: "failed" }),
            rejected_429: rejected.get_or_create_owned(&StatusLabel { status: "429" }),
            rejected_503: rejected.get_or_create_owned(&StatusLabel { status: "503" }),
            outbox_due,
            outbox_in_flight,
            in_flight,
            inbox,
            active_actors,
            timers_loaded,
            mailbox,
            timers_pending,
            outbox_pending,
            instances_in_use,
            instances_idle,
            registry,
        }
    }

    /// The counters of `module`'s turns in `tenant` (its name, not its storage id).
    pub fn turns_of(&self, tenant: &str, module: &str) -> TurnCounters {
        let of = |outcome| {
            self.turns.get_or_create_owned(&TurnLabels {
                tenant: tenant.to_owned(),
                module: module.to_owned(),
                outcome,
            })
        };
        TurnCounters {
            ok: of("ok"),
            refused: of("refused"),
            dead_letter: of("dead_letter"),
        }
    }

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a `String` does not fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_and_sums_them() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let w = WriterMetrics::default();
        let mut m = Metrics::new(&w);
        m.registry.register("t", "test", h.clone());
        let text = m.encode();
        assert!(text.contains("t_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"2\"} 3\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("t_sum 6.0\n"), "{text}");
        assert!(text.contains("t_count 4\n"), "{text}");
    }

    #[test]
    fn turns_are_counted_per_tenant_module_and_outcome() {
        let m = Metrics::new(&WriterMetrics::default());
        let c = m.turns_of("default", "counter");
        c.count(&TurnResult::Done {
            state: Vec::new(),
            effects: Vec::new(),
        });
        m.turns_of("default", "counter")
            .count(&TurnResult::DeadLetter {
                error: String::new(),
                attempts: 1,
            });
        let text = m.encode();
        assert!(
            text.contains(
                "dwell_turns_total{tenant=\"default\",module=\"counter\",outcome=\"ok\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("outcome=\"dead_letter\"} 1\n"), "{text}");
    }
}

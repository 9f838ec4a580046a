//! The single writer: group commit.
//! Long because it holds the whole write path: the queue's operations, batching, the
//! backend's transaction, and the answers held until the commit.
//!
//! One OS thread owns the write side of the backend (any [`dwell_storage::Backend`]:
//! redb's file, a PostgreSQL connection). It takes the first waiting operation, then
//! everything else already queued (up to [`MAX_OPS`]), applies them all in one write
//! transaction and commits once — one fsync for the whole batch. Only after the commit
//! does it answer the callers and hand the [`Notice`]s to the [`PostCommit`] hook: that is
//! the output gate (nothing leaves before it is durable). When the server is idle a batch
//! is a single operation, so latency stays one fsync; under load batches grow by
//! themselves while the previous fsync runs.

use std::collections::HashSet;
use std::sync::Arc;

use dwell_core::Tx;
use dwell_storage::faults::{Faults, Faulty};
use dwell_storage::{BATCH_SLICE_BYTES, Backend, Staged, Tables};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub use dwell_core::{
    AdminOp, CommittedTurn, EnqueueAck, EnqueueRequest, Expect, Idempotency, Inline, NewRequest,
    Notice, OutboxUpdate, TimerKey, TurnsAck, WriterConfig,
};

use super::Error;
use crate::domain::history::Retention;
use crate::domain::records::ModuleVersion;
use crate::domain::{ActorId, Clock, TenantId, TurnResult, UnixMs};
use crate::metrics::WriterMetrics;

/// Upper bound on operations in one write transaction.
pub const MAX_OPS: usize = 4096;
/// Capacity of the writer's queue: callers wait (backpressure) when it is full.
pub const QUEUE: usize = 16384;

type Done<T> = oneshot::Sender<Result<T, Error>>;

pub(super) enum Op {
    Enqueue {
        req: EnqueueRequest,
        done: Done<EnqueueAck>,
    },
    CommitTurns {
        actor: ActorId,
        turns: Vec<CommittedTurn>,
        inline: Vec<InlineTurn>,
        expect: Option<Expect>,
        /// The batch's snapshot, staged in slices (see [`large`]); its carrier turn's
        /// state is empty.
        staged: Option<Staged>,
        /// The history the actor's tenant keeps.
        history: Retention,
        done: Done<TurnsAck>,
    },
    /// One slice of a large state (see [`large`]).
    Stage {
        id: u64,
        index: u32,
        bytes: Vec<u8>,
        done: Done<()>,
    },
    PutModule {
        tenant: TenantId,
        name: String,
        bytes: Vec<u8>,
        digest: String,
        done: Done<(ModuleVersion, bool)>,
    },
    Stats {
        done: Done<WriterStats>,
    },
    /// Answered after the batch it is in has committed: the writer is alive and the
    /// file takes writes.
    Probe {
        done: Done<()>,
    },
    FireTimers {
        now: UnixMs,
        max: usize,
        done: Done<usize>,
    },
    FireThese {
        timers: Vec<TimerKey>,
        done: Done<usize>,
    },
    /// Deliver these inbox messages (a cluster node's, for its actors).
    Inbox {
        ids: Vec<u64>,
        done: Done<usize>,
    },
    Outbox {
        id: u128,
        update: OutboxUpdate,
        done: Done<()>,
    },
    Purge {
        now: UnixMs,
        max: usize,
        done: Done<usize>,
    },
    Admin {
        op: AdminOp,
        done: Done<bool>,
    },
}

impl Op {
    /// Bytes of a large state's slice this op writes (0 for every other op).
    fn slice_bytes(&self) -> usize {
        match self {
            Op::Stage { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }
}

/// The caller's answer to an enqueue.
pub type EnqueueDone = oneshot::Sender<Result<EnqueueAck, Error>>;

/// A message handed to its actor's runner in memory, before it was durable, and run
/// there: the writer commits its enqueue and its turn's outcome in one go — the message
/// never touches the mailbox. If the actor is not as the runner saw it (other mail
/// arrived first, a deploy or a delete intervened, the idempotency key was used), the
/// outcome is discarded and the message is only enqueued, like any other; its runner then
/// handles it again from the mailbox. Either way the caller hears after the commit.
pub struct InlineTurn {
    pub req: EnqueueRequest,
    /// For a timer handed over by the timer worker: its due time. It applies only if the
    /// timer is still pending (not cancelled, replaced or fired meanwhile); enqueueing it
    /// means firing it, if it is still pending, else nothing.
    pub timer: Option<UnixMs>,
    /// `None`: not run (the actor is complete, its module is unavailable, or the turn
    /// failed): enqueue only.
    pub result: Option<TurnResult>,
    /// How long the guest ran, for the turn's history record.
    pub took_us: u64,
    pub done: EnqueueDone,
}

/// Told about every commit, after it is durable.
pub trait PostCommit: Send + Sync + 'static {
    fn committed(&self, notices: Vec<Notice>);
}

/// Counters of the writer since start.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WriterStats {
    pub commits: u64,
    pub ops: u64,
    pub largest_batch: u64,
    /// The most state bytes (snapshots and slices of large ones) one commit wrote.
    pub largest_state_write: u64,
    /// SQL statements the writer executed, each one round trip (PostgreSQL; 0 on redb).
    pub statements: u64,
}

/// The backend the writer commits to, and the faults put in on purpose (tests only).
struct Side<B> {
    backend: B,
    faults: Option<Arc<Faults>>,
}

impl<B: Backend> Side<B> {
    /// The batch in one transaction. Ops that never ran (the transaction could not
    /// begin, or the backend refused it before any write, e.g. a lost partition) are
    /// failed here; a failure while they ran was told to their callers by `apply_ops`;
    /// at COMMIT, the answers hear it from the caller. Also returns when the turn core
    /// was done with the batch (so the rest of the time was the backend's commit).
    fn apply(&mut self, mut batch: Batch<'_>) -> (Result<u64, Failure>, Option<Instant>) {
        let mut unrun = Some(std::mem::take(&mut batch.ops));
        let faults = self.faults.as_deref();
        let mut applied = None;
        let written = self.backend.write(|tables| {
            batch.ops = unrun.take().unwrap_or_default();
            batch.prefetch = B::PREFETCH;
            let written = apply_ops(tables, faults, batch);
            applied = Some(Instant::now());
            written
        });
        if let (Err(e), Some(ops)) = (&written, unrun) {
            fail_ops(ops, e);
        }
        (written, applied)
    }
}

pub(super) fn spawn<B: Backend + Send + 'static>(
    backend: B,
    faults: Option<Arc<Faults>>,
    hook: Arc<dyn PostCommit>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    closed: Arc<Closed>,
    metrics: WriterMetrics,
) -> mpsc::Sender<Op> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("dwell-writer".into())
        .spawn(move || {
            let mut side = Side { backend, faults };
            run(&mut side, rx, hook, clock, config, &metrics);
            // Every sender is gone: drop our handle. When it is the last one, redb closes
            // the file cleanly (no repair at the next start).
            drop(side);
            closed.signal();
        })
        .expect("spawn the writer thread");
    tx
}

/// Set when the writer thread has finished and released the database.
#[derive(Default)]
pub struct Closed {
    done: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Closed {
    fn signal(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Wait up to `timeout` for the writer to finish; `true` if it did.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let (done, _) = self
            .cv
            .wait_timeout_while(done, timeout, |d| !*d)
            .unwrap_or_else(|p| p.into_inner());
        *done
    }
}

/// A caller's answer, held until the batch commits.
enum Answer {
    Enqueue(Done<EnqueueAck>, EnqueueAck),
    Unit(Done<()>),
    Turns(Done<TurnsAck>, TurnsAck),
    Module(Done<(ModuleVersion, bool)>, (ModuleVersion, bool)),
    Count(Done<usize>, usize),
    Flag(Done<bool>, bool),
}

impl Answer {
    fn send(self, commit: &Result<(), Failure>) {
        let fail = failure_error;
        // A caller that stopped waiting is not an error for the batch.
        match (self, commit) {
            (Answer::Enqueue(d, v), Ok(())) => drop(d.send(Ok(v))),
            (Answer::Unit(d), Ok(())) => drop(d.send(Ok(()))),
            (Answer::Turns(d, v), Ok(())) => drop(d.send(Ok(v))),
            (Answer::Turns(d, _), Err(e)) => drop(d.send(Err(fail(e)))),
            (Answer::Module(d, v), Ok(())) => drop(d.send(Ok(v))),
            (Answer::Count(d, v), Ok(())) => drop(d.send(Ok(v))),
            (Answer::Count(d, _), Err(e)) => drop(d.send(Err(fail(e)))),
            (Answer::Flag(d, v), Ok(())) => drop(d.send(Ok(v))),
            (Answer::Flag(d, _), Err(e)) => drop(d.send(Err(fail(e)))),
            (Answer::Enqueue(d, _), Err(e)) => drop(d.send(Err(fail(e)))),
            (Answer::Unit(d), Err(e)) => drop(d.send(Err(fail(e)))),
            (Answer::Module(d, _), Err(e)) => drop(d.send(Err(fail(e)))),
        }
    }
}

fn run<B: Backend>(
    side: &mut Side<B>,
    mut rx: mpsc::Receiver<Op>,
    hook: Arc<dyn PostCommit>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    metrics: &WriterMetrics,
) {
    let mut stats = WriterStats::default();
    // After a full disk or another I/O error, the file must be opened again.
    let mut reopen = false;
    // Slices that did not fit in an earlier batch (see [`BATCH_SLICE_BYTES`]):
    // they go first into the next, while other operations never wait behind them.
    let mut deferred: std::collections::VecDeque<Op> = std::collections::VecDeque::new();
    loop {
        let mut ops = Vec::new();
        let mut slice_bytes = 0;
        while let Some(op) = deferred.front() {
            if !ops.is_empty() && slice_bytes + op.slice_bytes() > BATCH_SLICE_BYTES {
                break;
            }
            slice_bytes += op.slice_bytes();
            ops.extend(deferred.pop_front());
        }
        if ops.is_empty() {
            match rx.blocking_recv() {
                Some(op) => {
                    slice_bytes += op.slice_bytes();
                    ops.push(op);
                }
                None => break,
            }
        }
        while ops.len() < MAX_OPS {
            match rx.try_recv() {
                Ok(op) => {
                    let bytes = op.slice_bytes();
                    if bytes > 0 && slice_bytes + bytes > BATCH_SLICE_BYTES {
                        deferred.push_back(op);
                        continue;
                    }
                    slice_bytes += bytes;
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        stats.commits += 1;
        stats.ops += ops.len() as u64;
        stats.largest_batch = stats.largest_batch.max(ops.len() as u64);
        metrics.batch_ops.observe(ops.len() as f64);
        let started = Instant::now();

        let mut answers = Vec::with_capacity(ops.len());
        let mut notices = Vec::new();
        if reopen {
            match side.backend.recover() {
                Ok(()) => reopen = false,
                Err(e) => tracing::warn!(error = %e, "the store cannot be reopened yet"),
            }
        }
        let writes = ops
            .iter()
            .any(|op| !matches!(op, Op::Stats { .. } | Op::Probe { .. }));
        let (outcome, applied) = side.apply(Batch {
            ops,
            now: clock.now_ms(),
            config: &config,
            stats: &stats,
            answers: &mut answers,
            notices: &mut notices,
            prefetch: false,
        });
        let outcome = outcome.map(|written| {
            stats.largest_state_write = stats.largest_state_write.max(written);
        });
        if outcome.is_ok() {
            let done = Instant::now();
            metrics
                .commit_seconds
                .observe((done - started).as_secs_f64());
            if let Some(applied) = applied {
                metrics
                    .backend_commit_seconds
                    .observe((done - applied).as_secs_f64());
            }
        }
        stats.statements = side.backend.statements();
        if let Err(e) = &outcome {
            match e {
                Failure::Full => tracing::error!("write batch failed: the disk is full"),
                Failure::Unavailable => {
                    tracing::warn!("write batch failed: the store is not open")
                }
                e => {
                    tracing::error!(error = %e, "write batch failed; its callers get an error")
                }
            }
            notices.clear();
            reopen |= matches!(e, Failure::Full | Failure::Unavailable);
        }
        match &outcome {
            Err(Failure::Full) => side.backend.set_full(true),
            Ok(()) if writes => side.backend.set_full(false),
            _ => {}
        }
        for a in answers {
            a.send(&outcome);
        }
        if !notices.is_empty() {
            hook.committed(dedupe(notices));
        }
    }
    tracing::debug!("writer stopped");
}

fn dedupe(notices: Vec<Notice>) -> Vec<Notice> {
    let mut seen = HashSet::new();
    notices
        .into_iter()
        .filter(|n| match n {
            Notice::Mail(a) => seen.insert(a.clone()),
            _ => true,
        })
        .collect()
}

/// Why a batch did not commit: the contract's error (`Full` and `Unavailable` make the
/// writer reopen its side before the next batch).
type Failure = dwell_storage::Error;

/// What the callers of a failed batch hear.
fn failure_error(f: &Failure) -> Error {
    Error::from(f.clone())
}

/// Answer every op of a batch that could not be applied with why (callers of inline
/// turns included).
fn fail_ops(ops: impl IntoIterator<Item = Op>, failure: &Failure) {
    for op in ops {
        let _ = match op {
            Op::Enqueue { done, .. } => done_fail(done, failure).map_err(drop),
            Op::CommitTurns { inline, done, .. } => {
                for it in inline {
                    let _ = done_fail(it.done, failure);
                }
                done_fail(done, failure).map_err(drop)
            }
            Op::Stage { done, .. } => done_fail(done, failure).map_err(drop),
            Op::PutModule { done, .. } => done_fail(done, failure).map_err(drop),
            Op::Stats { done } => done_fail(done, failure).map_err(drop),
            Op::Probe { done } => done_fail(done, failure).map_err(drop),
            Op::FireTimers { done, .. } => done_fail(done, failure).map_err(drop),
            Op::FireThese { done, .. } => done_fail(done, failure).map_err(drop),
            Op::Inbox { done, .. } => done_fail(done, failure).map_err(drop),
            Op::Outbox { done, .. } => done_fail(done, failure).map_err(drop),
            Op::Purge { done, .. } => done_fail(done, failure).map_err(drop),
            Op::Admin { done, .. } => done_fail(done, failure).map_err(drop),
        };
    }
}

/// One batch's operations and where their outcomes go.
struct Batch<'a> {
    ops: Vec<Op>,
    now: UnixMs,
    config: &'a WriterConfig,
    stats: &'a WriterStats,
    answers: &'a mut Vec<Answer>,
    notices: &'a mut Vec<Notice>,
    /// Start with [`Tables::prefetch`] (for a backend that pays a round trip per read).
    prefetch: bool,
}

/// The batch through the turn core, over `tables` or, when faults are injected, over
/// the fault wrapper around them.
fn apply_ops<T: Tables>(
    tables: &mut T,
    faults: Option<&Faults>,
    batch: Batch<'_>,
) -> Result<u64, Failure> {
    match faults {
        Some(faults) => {
            let mut faulty = Faulty {
                inner: tables,
                faults,
            };
            apply_batch_ops(&mut faulty, batch)
        }
        None => apply_batch_ops(tables, batch),
    }
}

/// The batch's operations through the turn core; the state bytes they wrote. When one
/// fails, the batch is abandoned: that op's callers and those of every op after it hear
/// the failure at once; the answers of the ops before it are sent the failure by the
/// caller (the transaction is never committed).
fn apply_batch_ops<T: Tables>(tables: &mut T, batch: Batch<'_>) -> Result<u64, Failure> {
    let Batch {
        ops,
        now,
        config,
        stats,
        answers,
        notices,
        prefetch: wanted,
    } = batch;
    if wanted && let Err(e) = prefetch(tables, &ops) {
        let failure = e;
        fail_ops(ops, &failure);
        return Err(failure);
    }
    let mut tx = Tx::new(tables, now, config, notices);
    let mut ops = ops.into_iter();
    while let Some(op) = ops.next() {
        if let Err(failure) = apply_op(&mut tx, op, stats, answers) {
            fail_ops(ops, &failure);
            return Err(failure);
        }
    }
    Ok(tx.state_bytes)
}

/// Tell the tables which actors and messages the batch's enqueues and turns will read
/// (on PostgreSQL, two round trips for the batch instead of several per op).
fn prefetch<T: Tables>(tables: &T, ops: &[Op]) -> Result<(), dwell_storage::Error> {
    let mut keys = Vec::new();
    let mut seqs = Vec::new();
    for op in ops {
        match op {
            Op::Enqueue { req, .. } => keys.push(req.actor.storage_key()),
            Op::CommitTurns { actor, turns, .. } => {
                keys.push(actor.storage_key());
                seqs.extend(turns.iter().map(|t| (keys.len() - 1, t.seq)));
            }
            _ => {}
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let actors: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mail: Vec<(&str, u64)> = seqs.iter().map(|&(i, s)| (actors[i], s)).collect();
    tables.prefetch(&actors, &mail)
}

/// One op; on failure its callers have been told.
fn apply_op<T: Tables>(
    tx: &mut Tx<'_, T>,
    op: Op,
    stats: &WriterStats,
    answers: &mut Vec<Answer>,
) -> Result<(), Failure> {
    /// The value for `answers`, or the failure sent to `done` at once.
    fn or_tell<V, D>(
        done: Done<D>,
        r: Result<V, dwell_storage::Error>,
    ) -> Result<(V, Done<D>), Failure> {
        match r {
            Ok(v) => Ok((v, done)),
            Err(e) => {
                let failure = e;
                let _ = done_fail(done, &failure);
                Err(failure)
            }
        }
    }
    match op {
        Op::Enqueue { req, done } => {
            let (ack, done) = or_tell(done, tx.enqueue_request(req))?;
            answers.push(Answer::Enqueue(done, ack));
        }
        Op::CommitTurns {
            actor,
            turns,
            inline,
            expect,
            staged,
            history,
            done,
        } => {
            let mut dones = Vec::with_capacity(inline.len());
            let inline = inline
                .into_iter()
                .map(|it| {
                    dones.push(Some(it.done));
                    Inline {
                        req: it.req,
                        timer: it.timer,
                        result: it.result,
                        took_us: it.took_us,
                    }
                })
                .collect();
            let result = tx.commit_turns(&actor, turns, inline, expect, staged, history);
            let ((ack, acks), done) = match or_tell(done, result) {
                Ok(v) => v,
                Err(failure) => {
                    for d in dones.into_iter().flatten() {
                        let _ = done_fail(d, &failure);
                    }
                    return Err(failure);
                }
            };
            for (j, ack) in acks {
                if let Some(d) = dones.get_mut(j).and_then(Option::take) {
                    answers.push(Answer::Enqueue(d, ack));
                }
            }
            answers.push(Answer::Turns(done, ack));
        }
        Op::Stage {
            id,
            index,
            bytes,
            done,
        } => {
            let ((), done) = or_tell(done, tx.tables.stage_slice(id, index, &bytes))?;
            tx.state_bytes += bytes.len() as u64;
            answers.push(Answer::Unit(done));
        }
        Op::PutModule {
            tenant,
            name,
            bytes,
            digest,
            done,
        } => {
            let (v, done) = or_tell(done, tx.put_module(&tenant, &name, &bytes, &digest))?;
            answers.push(Answer::Module(done, v));
        }
        Op::Stats { done } => {
            let _ = done.send(Ok(stats.clone()));
        }
        Op::Probe { done } => answers.push(Answer::Unit(done)),
        Op::FireTimers { now, max, done } => {
            let (n, done) = or_tell(done, tx.fire_timers(now, max))?;
            answers.push(Answer::Count(done, n));
        }
        Op::Inbox { ids, done } => {
            let (n, done) = or_tell(done, tx.deliver_inbox(&ids))?;
            answers.push(Answer::Count(done, n));
        }
        Op::FireThese { timers, done } => {
            let fired = timers.into_iter().try_fold(0, |n, (due, actor, name)| {
                Ok(n + usize::from(tx.fire_one(due, &actor, &name)?))
            });
            let (n, done) = or_tell(done, fired)?;
            answers.push(Answer::Count(done, n));
        }
        Op::Outbox { id, update, done } => {
            let ((), done) = or_tell(done, tx.outbox_update(id, update))?;
            answers.push(Answer::Unit(done));
        }
        Op::Purge { now, max, done } => {
            let (n, done) = or_tell(done, tx.purge(now, max))?;
            answers.push(Answer::Count(done, n));
        }
        Op::Admin { op, done } => {
            let (changed, done) = or_tell(done, tx.admin(op))?;
            answers.push(Answer::Flag(done, changed));
        }
    }
    Ok(())
}

/// Tell one caller the batch failed.
fn done_fail<D>(done: Done<D>, failure: &Failure) -> Result<(), Result<D, Error>> {
    done.send(Err(failure_error(failure)))
}

//! The single writer: group commit.
//!
//! One OS thread owns the write side of redb. It takes the first waiting operation, then
//! everything else already queued (up to [`MAX_OPS`]), applies them all in one write
//! transaction and commits once — one fsync for the whole batch. Only after the commit
//! does it answer the callers and hand the [`Notice`]s to the [`PostCommit`] hook: that is
//! the output gate (nothing leaves before it is durable). When the server is idle a batch
//! is a single operation, so latency stays one fsync; under load batches grow by
//! themselves while the previous fsync runs.

use std::collections::HashSet;
use std::sync::Arc;

use redb::{Database, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{
    ActorId, ActorStatus, Clock, Effect, Envelope, MessageKind, RefusalCode, ReplyTo, RequestId,
    RequestStatus, TenantId, TurnResult, UnixMs,
};

use super::Error;
use super::large::{self, Carrier, LargeTables, Staged};
use super::records::{
    self, ActorMeta, CallbackStatus, DeadLetter, Delivery, IdempotencyRecord, KeyRecord,
    ModuleRecord, ModuleVersion, OutboxEntry, PURGE_PREFIX, PurgeJob, RequestRecord, TenantRecord,
};
use super::tables::*;

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

/// Administrative writes. Each answers whether it changed anything.
#[derive(Debug, Clone)]
pub enum AdminOp {
    /// Create (`create_only`) or update a tenant.
    PutTenant {
        name: String,
        record: TenantRecord,
        create_only: bool,
    },
    /// Delete a tenant, its keys and its modules.
    DeleteTenant {
        name: String,
    },
    PutKey {
        id: String,
        record: KeyRecord,
    },
    /// Revoke a key of `tenant`.
    DeleteKey {
        tenant: String,
        id: String,
    },
    PutMeta {
        key: String,
        value: Vec<u8>,
    },
    /// Remove up to `max` more records of deleted tenant `id` (its actors with their
    /// mailboxes, states, timers, dead letters and pending calls; idempotency keys;
    /// requests; outbox entries). `true` while more remain; the job is forgotten when
    /// nothing does.
    PurgeTenant {
        id: String,
        max: usize,
    },
    /// Delete an actor: state, mailbox (its waiting requests fail), timers, dead letters.
    DeleteActor {
        actor: ActorId,
    },
    /// Delete a module name (its versions stay for actors pinned to them).
    DeleteModule {
        tenant: String,
        name: String,
    },
    /// Put a dead letter back at the end of its actor's mailbox. A request gets a new
    /// request record (`new_request`), since the first one has failed for good.
    RetryDeadLetter {
        actor: ActorId,
        seq: u64,
        new_request: RequestId,
    },
}

/// Limits the writer enforces.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Actors per tenant unless the tenant's quotas say otherwise.
    pub max_actors: u64,
}

/// The outcome of one outbox delivery attempt.
#[derive(Debug, Clone)]
pub enum OutboxUpdate {
    /// Done for good. For an HTTP call, the result message for the actor; for a
    /// callback, its final status.
    Finish {
        result: Option<Envelope>,
        callback: Option<CallbackStatus>,
    },
    /// Try again at `due`.
    Retry { due: UnixMs, error: String },
}

/// A message to append to an actor's mailbox.
#[derive(Debug, Clone)]
pub struct EnqueueRequest {
    pub actor: ActorId,
    pub envelope: Envelope,
    /// Set for HTTP calls: the request record to create alongside.
    pub request: Option<NewRequest>,
    /// `Idempotency-Key`: a repeat within the retention window enqueues nothing.
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub expires_ms: UnixMs,
    /// What the request carries (see [`IdempotencyRecord::fingerprint`]): a repeat of the
    /// key with another fingerprint is a conflict, not a repeat.
    pub fingerprint: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: RequestId,
    pub callback_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueAck {
    Accepted {
        seq: u64,
    },
    /// The actor's process is complete; nothing was enqueued.
    ActorCompleted,
    /// No module of that name exists for the tenant; nothing was enqueued.
    UnknownModule,
    /// The idempotency key was used before: nothing was enqueued; this is what the first
    /// use produced.
    Duplicate {
        request: Option<RequestId>,
        seq: u64,
    },
    /// The idempotency key was used before for another actor.
    KeyConflict,
    /// Creating the actor would exceed the tenant's actor quota.
    ActorQuota(u64),
}

/// The outcome of the turn that handled message `seq`.
#[derive(Debug, Clone)]
pub struct CommittedTurn {
    pub seq: u64,
    pub result: TurnResult,
}

/// A timer's key: `(due, actor storage key, name)`.
pub type TimerKey = (UnixMs, String, String);

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
    pub done: EnqueueDone,
}

/// What a runner saw of its actor when it ran inline turns after its mailbox turns.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The head the actor has after this batch's mailbox turns.
    pub head_seq: u64,
    /// `None`: the actor did not exist yet.
    pub created_ms: Option<UnixMs>,
    pub digest: String,
}

/// The writer's answer to a batch of turns.
#[derive(Debug, Clone)]
pub struct TurnsAck {
    /// The actor's meta after the commit (`None` if it does not exist).
    pub meta: Option<ActorMeta>,
    /// Every inline turn was committed as run (none fell back to the mailbox).
    pub inline_applied: bool,
}

/// What became durable, for the post-commit path.
#[derive(Debug, Clone)]
pub enum Notice {
    /// An actor has new mail.
    Mail(ActorId),
    /// A request got its final status.
    Settled(RequestId, RequestStatus),
    /// A timer was set.
    TimerSet { key: TimerKey, payload: Vec<u8> },
    /// A timer was cancelled, replaced or fired.
    TimerGone(TimerKey),
    /// A delivery entered the outbox.
    Outbox,
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
}

pub(super) fn spawn(
    db: Arc<super::DbCell>,
    hook: Arc<dyn PostCommit>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    closed: Arc<Closed>,
) -> mpsc::Sender<Op> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("dwell-writer".into())
        .spawn(move || {
            run(db.clone(), rx, hook, clock, config);
            // Every sender is gone: drop our handle. When it is the last one, redb closes
            // the file cleanly (no repair at the next start).
            drop(db);
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
        let fail = |e: &Failure| match e {
            Failure::Full => Error::Full,
            Failure::Unavailable => Error::Unavailable,
            Failure::Other(e) => Error::Corrupt(format!("commit failed: {e}")),
        };
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

fn run(
    cell: Arc<super::DbCell>,
    mut rx: mpsc::Receiver<Op>,
    hook: Arc<dyn PostCommit>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
) {
    let mut stats = WriterStats::default();
    // After a full disk or another I/O error, the file must be opened again.
    let mut reopen = false;
    // Slices that did not fit in an earlier batch (see [`large::BATCH_SLICE_BYTES`]):
    // they go first into the next, while other operations never wait behind them.
    let mut deferred: std::collections::VecDeque<Op> = std::collections::VecDeque::new();
    loop {
        let mut ops = Vec::new();
        let mut slice_bytes = 0;
        while let Some(op) = deferred.front() {
            if !ops.is_empty() && slice_bytes + op.slice_bytes() > large::BATCH_SLICE_BYTES {
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
                    if bytes > 0 && slice_bytes + bytes > large::BATCH_SLICE_BYTES {
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

        let mut answers = Vec::with_capacity(ops.len());
        let mut notices = Vec::new();
        if reopen {
            match cell.reopen() {
                Ok(()) => reopen = false,
                Err(e) => tracing::warn!(error = %e, "the data file cannot be reopened yet"),
            }
        }
        let writes = ops
            .iter()
            .any(|op| !matches!(op, Op::Stats { .. } | Op::Probe { .. }));
        let outcome = match cell.get() {
            Ok(db) => apply_batch(
                &db,
                ops,
                clock.now_ms(),
                &config,
                &stats,
                &mut answers,
                &mut notices,
            ),
            Err(_) => {
                // Not open: every op is answered "unavailable" below.
                drop_ops(ops);
                Err(Failure::Unavailable)
            }
        };
        let outcome = outcome.map(|written| {
            stats.largest_state_write = stats.largest_state_write.max(written);
        });
        if let Err(e) = &outcome {
            match e {
                Failure::Full => tracing::error!("write batch failed: the disk is full"),
                Failure::Unavailable => {
                    tracing::warn!("write batch failed: the data file is not open")
                }
                Failure::Other(e) => {
                    tracing::error!(error = %e, "write batch failed; its callers get an error")
                }
            }
            notices.clear();
            reopen |= matches!(e, Failure::Full | Failure::Unavailable);
        }
        match &outcome {
            Err(Failure::Full) => cell.full.store(true, std::sync::atomic::Ordering::Relaxed),
            Ok(()) if writes => cell.full.store(false, std::sync::atomic::Ordering::Relaxed),
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

/// Why a batch did not commit.
#[derive(Debug, Clone)]
enum Failure {
    /// The disk is full (nothing was written).
    Full,
    /// The file must be opened again before anything else is written.
    Unavailable,
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Other(e)
    }
}

impl Failure {
    /// A full disk, a file to reopen (redb refuses everything after an I/O error), or
    /// something else.
    fn of(e: impl Into<redb::Error>) -> Failure {
        match e.into() {
            redb::Error::Io(io)
                if io.kind() == std::io::ErrorKind::StorageFull
                    || io.raw_os_error() == Some(libc::ENOSPC) =>
            {
                Failure::Full
            }
            redb::Error::PreviousIo => Failure::Unavailable,
            e => Failure::Other(e.to_string()),
        }
    }
}

/// Answer every op of a batch that could not be applied: the data file is not open.
fn drop_ops(ops: Vec<Op>) {
    for op in ops {
        match op {
            Op::Enqueue { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::CommitTurns { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::Stage { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::PutModule { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::Stats { done } => drop(done.send(Err(Error::Unavailable))),
            Op::Probe { done } => drop(done.send(Err(Error::Unavailable))),
            Op::FireTimers { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::FireThese { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::Outbox { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::Purge { done, .. } => drop(done.send(Err(Error::Unavailable))),
            Op::Admin { done, .. } => drop(done.send(Err(Error::Unavailable))),
        }
    }
}

fn apply_batch(
    db: &Database,
    ops: Vec<Op>,
    now: UnixMs,
    config: &WriterConfig,
    stats: &WriterStats,
    answers: &mut Vec<Answer>,
    notices: &mut Vec<Notice>,
) -> Result<u64, Failure> {
    let txn = db.begin_write().map_err(Failure::of)?;
    let written;
    {
        let mut tx = Tx::open(&txn, now, config, notices).map_err(|e| e.to_string())?;
        for op in ops {
            match op {
                Op::Enqueue { req, done } => {
                    let ack = tx.enqueue_request(req).map_err(|e| e.to_string())?;
                    answers.push(Answer::Enqueue(done, ack));
                }
                Op::CommitTurns {
                    actor,
                    turns,
                    inline,
                    expect,
                    staged,
                    done,
                } => {
                    let ack = tx
                        .commit_turns(&actor, turns, inline, expect, staged, answers)
                        .map_err(|e| e.to_string())?;
                    answers.push(Answer::Turns(done, ack));
                }
                Op::Stage {
                    id,
                    index,
                    bytes,
                    done,
                } => {
                    tx.large
                        .stage(id, index, &bytes)
                        .map_err(|e| e.to_string())?;
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
                    let v = tx
                        .put_module(&tenant, &name, &bytes, &digest)
                        .map_err(|e| e.to_string())?;
                    answers.push(Answer::Module(done, v));
                }
                Op::Stats { done } => {
                    let _ = done.send(Ok(stats.clone()));
                }
                Op::Probe { done } => answers.push(Answer::Unit(done)),
                Op::FireTimers { now, max, done } => {
                    let n = tx.fire_timers(now, max).map_err(|e| e.to_string())?;
                    answers.push(Answer::Count(done, n));
                }
                Op::FireThese { timers, done } => {
                    let mut n = 0;
                    for (due, actor, name) in timers {
                        n += usize::from(
                            tx.fire_one(due, &actor, &name).map_err(|e| e.to_string())?,
                        );
                    }
                    answers.push(Answer::Count(done, n));
                }
                Op::Outbox { id, update, done } => {
                    tx.outbox_update(id, update).map_err(|e| e.to_string())?;
                    answers.push(Answer::Unit(done));
                }
                Op::Purge { now, max, done } => {
                    let n = tx.purge(now, max).map_err(|e| e.to_string())?;
                    answers.push(Answer::Count(done, n));
                }
                Op::Admin { op, done } => {
                    let changed = tx.admin(op).map_err(|e| e.to_string())?;
                    answers.push(Answer::Flag(done, changed));
                }
            }
        }
        written = tx.state_bytes;
    }
    txn.commit().map_err(Failure::of)?;
    Ok(written)
}

/// An answer to a request or an ask: the reply, or the error and (for a refusal) its
/// class.
type Answered = (ReplyTo, Result<Vec<u8>, String>, Option<RefusalCode>);

/// What a batch's turns leave to do after their bookkeeping.
#[derive(Default)]
struct TurnOutput {
    new_state: Option<Vec<u8>>,
    /// The new state is the batch's staged one (then `new_state` is `None`).
    new_ref: Option<large::StateRef>,
    replies: Vec<Answered>,
    /// Messages to other mailboxes wait until the actor's meta is written, so that a
    /// message an actor sends to itself lands after its own bookkeeping.
    outgoing: Vec<(ActorId, Envelope)>,
}

/// The open tables of one write transaction, and what the batch has to announce.
struct Tx<'t> {
    actors: Table<'t, &'static str, &'static [u8]>,
    states: Table<'t, &'static str, &'static [u8]>,
    mailbox: Table<'t, (&'static str, u64), &'static [u8]>,
    requests: Table<'t, u128, &'static [u8]>,
    dead: Table<'t, (&'static str, u64), &'static [u8]>,
    modules: Table<'t, &'static str, &'static [u8]>,
    blobs: Table<'t, &'static str, &'static [u8]>,
    timers: Table<'t, (u64, &'static str, &'static str), &'static [u8]>,
    timer_index: Table<'t, (&'static str, &'static str), u64>,
    outbox: Table<'t, u128, &'static [u8]>,
    outbox_due: Table<'t, (u64, u128), ()>,
    http_pending: Table<'t, (&'static str, &'static str), u128>,
    idem: Table<'t, (&'static str, &'static str), &'static [u8]>,
    idem_expiry: Table<'t, (u64, &'static str, &'static str), ()>,
    tenants: Table<'t, &'static str, &'static [u8]>,
    keys: Table<'t, &'static str, &'static [u8]>,
    tenant_actors: Table<'t, &'static str, u64>,
    tenant_ids: Table<'t, &'static str, &'static str>,
    meta_table: Table<'t, &'static str, &'static [u8]>,
    large: LargeTables<'t>,
    /// State bytes written in this transaction.
    state_bytes: u64,
    now: UnixMs,
    config: &'t WriterConfig,
    notices: &'t mut Vec<Notice>,
}

/// Timer names are `[A-Za-z0-9_.:-]`, all below this byte: the end of an actor's range.
const NAME_END: &str = "\u{7f}";

impl<'t> Tx<'t> {
    fn open(
        txn: &'t WriteTransaction,
        now: UnixMs,
        config: &'t WriterConfig,
        notices: &'t mut Vec<Notice>,
    ) -> Result<Self, Error> {
        Ok(Tx {
            actors: txn.open_table(ACTORS)?,
            states: txn.open_table(STATES)?,
            mailbox: txn.open_table(MAILBOX)?,
            requests: txn.open_table(REQUESTS)?,
            dead: txn.open_table(DEAD)?,
            modules: txn.open_table(MODULES)?,
            blobs: txn.open_table(BLOBS)?,
            timers: txn.open_table(TIMERS)?,
            timer_index: txn.open_table(TIMER_INDEX)?,
            outbox: txn.open_table(OUTBOX)?,
            outbox_due: txn.open_table(OUTBOX_DUE)?,
            http_pending: txn.open_table(HTTP_PENDING)?,
            idem: txn.open_table(IDEMPOTENCY)?,
            idem_expiry: txn.open_table(IDEM_EXPIRY)?,
            tenants: txn.open_table(TENANTS)?,
            keys: txn.open_table(KEYS)?,
            tenant_actors: txn.open_table(TENANT_ACTORS)?,
            tenant_ids: txn.open_table(TENANT_IDS)?,
            meta_table: txn.open_table(META)?,
            large: LargeTables::open(txn)?,
            state_bytes: 0,
            now,
            config,
            notices,
        })
    }

    fn meta(&self, key: &str) -> Result<Option<ActorMeta>, Error> {
        match self.actors.get(key)? {
            Some(v) => Ok(Some(records::decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn enqueue_request(&mut self, req: EnqueueRequest) -> Result<EnqueueAck, Error> {
        let tenant = req.actor.tenant.0.as_str();
        if let Some(idem) = &req.idempotency {
            let found: Option<IdempotencyRecord> =
                match self.idem.get((tenant, idem.key.as_str()))? {
                    Some(v) => Some(records::decode(v.value())?),
                    None => None,
                };
            if let Some(rec) = found {
                if rec.expires_ms > self.now {
                    if rec.actor != req.actor
                        || rec.fingerprint.is_some_and(|f| f != idem.fingerprint)
                    {
                        return Ok(EnqueueAck::KeyConflict);
                    }
                    return Ok(EnqueueAck::Duplicate {
                        request: rec.request.map(RequestId),
                        seq: rec.seq,
                    });
                }
                self.idem.remove((tenant, idem.key.as_str()))?;
                self.idem_expiry
                    .remove((rec.expires_ms, tenant, idem.key.as_str()))?;
            }
        }
        let ack = self.enqueue(&req.actor, &req.envelope)?;
        if let (EnqueueAck::Accepted { seq }, Some(idem)) = (&ack, &req.idempotency) {
            self.put_idempotency(tenant, idem, &req.actor, req.request.as_ref(), *seq)?;
        }
        if let (EnqueueAck::Accepted { .. }, Some(new)) = (&ack, req.request) {
            self.put_request(&req.actor, new)?;
        }
        Ok(ack)
    }

    fn put_idempotency(
        &mut self,
        tenant: &str,
        idem: &Idempotency,
        actor: &ActorId,
        request: Option<&NewRequest>,
        seq: u64,
    ) -> Result<(), Error> {
        let rec = IdempotencyRecord {
            actor: actor.clone(),
            request: request.map(|r| r.id.0),
            seq,
            expires_ms: idem.expires_ms,
            fingerprint: Some(idem.fingerprint),
        };
        self.idem.insert(
            (tenant, idem.key.as_str()),
            records::encode(&rec).as_slice(),
        )?;
        self.idem_expiry
            .insert((idem.expires_ms, tenant, idem.key.as_str()), ())?;
        Ok(())
    }

    /// A new pending request record.
    fn put_request(&mut self, actor: &ActorId, new: NewRequest) -> Result<(), Error> {
        let rec = RequestRecord {
            actor: actor.clone(),
            status: RequestStatus::Pending,
            created_ms: self.now,
            settled_ms: None,
            callback_url: new.callback_url,
            callback: None,
        };
        self.requests
            .insert(new.id.0, records::encode(&rec).as_slice())?;
        Ok(())
    }

    /// Append to a mailbox, creating the actor (pinned to its module's latest version)
    /// on its first message.
    fn enqueue(&mut self, actor: &ActorId, env: &Envelope) -> Result<EnqueueAck, Error> {
        self.enqueue_with(actor, env, |_| false)
    }

    /// [`Tx::enqueue`], adjusting the actor's meta in the same write.
    fn enqueue_with(
        &mut self,
        actor: &ActorId,
        env: &Envelope,
        adjust: impl FnOnce(&mut ActorMeta) -> bool,
    ) -> Result<EnqueueAck, Error> {
        let key = actor.storage_key();
        let existing = self.meta(&key)?;
        let is_new = existing.is_none();
        let mut meta = match existing {
            Some(m) => m,
            None => match self.new_actor(actor)? {
                Ok(m) => m,
                Err(refused) => return Ok(refused),
            },
        };
        if meta.status == ActorStatus::Completed {
            return Ok(EnqueueAck::ActorCompleted);
        }
        let last = self
            .mailbox
            .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?
            .next_back()
            .transpose()?
            .map(|(k, _)| k.value().1);
        let seq = last.map_or(meta.head_seq, |l| l + 1);
        self.mailbox
            .insert((key.as_str(), seq), records::encode(env).as_slice())?;
        if adjust(&mut meta) || is_new {
            self.actors
                .insert(key.as_str(), records::encode(&meta).as_slice())?;
        }
        self.notices.push(Notice::Mail(actor.clone()));
        Ok(EnqueueAck::Accepted { seq })
    }

    /// The meta of a brand-new actor, pinned to its module's latest version, counted
    /// against its tenant's actor quota (the caller writes the meta).
    fn new_actor(&mut self, actor: &ActorId) -> Result<Result<ActorMeta, EnqueueAck>, Error> {
        let module: Option<ModuleRecord> = match self.modules.get(actor.module_key().as_str())? {
            Some(v) => Some(records::decode(v.value())?),
            None => None,
        };
        let Some(latest) = module.as_ref().and_then(|m| m.latest()) else {
            return Ok(Err(EnqueueAck::UnknownModule));
        };
        let tenant = actor.tenant.0.as_str();
        // The tenant's record is kept by name; its identity may differ.
        let name = match self.tenant_ids.get(tenant)? {
            Some(n) => n.value().to_owned(),
            None => tenant.to_owned(),
        };
        let max = match self.tenants.get(name.as_str())? {
            Some(v) => {
                records::decode::<TenantRecord>(v.value())?
                    .quotas
                    .max_actors
            }
            None => None,
        }
        .unwrap_or(self.config.max_actors);
        let count = self
            .tenant_actors
            .get(tenant)?
            .map(|v| v.value())
            .unwrap_or(0);
        if count >= max {
            return Ok(Err(EnqueueAck::ActorQuota(max)));
        }
        self.tenant_actors.insert(tenant, count + 1)?;
        Ok(Ok(ActorMeta {
            module: actor.module.clone(),
            digest: latest.digest.clone(),
            version: latest.version,
            status: ActorStatus::Active,
            head_seq: 0,
            turns: 0,
            dead_letters: 0,
            created_ms: self.now,
            updated_ms: self.now,
            timers: 0,
        }))
    }

    /// Whether an actor's mailbox holds any message.
    fn has_mail(&self, key: &str) -> Result<bool, Error> {
        Ok(self
            .mailbox
            .range((key, 0)..=(key, u64::MAX))?
            .next()
            .transpose()?
            .is_some())
    }

    /// Whether inline turns are all addressed to `actor`, their timers are still pending,
    /// and none of their `Idempotency-Key`s is taken (stored and unexpired, or repeated
    /// among them).
    fn fresh_keys(&self, actor: &ActorId, inline: &[InlineTurn]) -> Result<bool, Error> {
        let tenant = actor.tenant.0.as_str();
        let mut seen = HashSet::new();
        for it in inline {
            if it.req.actor != *actor {
                return Ok(false);
            }
            if let (Some(due), MessageKind::Timer { name }) = (it.timer, &it.req.envelope.kind) {
                let key = actor.storage_key();
                if self
                    .timers
                    .get((due, key.as_str(), name.as_str()))?
                    .is_none()
                {
                    return Ok(false);
                }
            }
            let Some(idem) = &it.req.idempotency else {
                continue;
            };
            if !seen.insert(idem.key.as_str()) {
                return Ok(false);
            }
            if let Some(v) = self.idem.get((tenant, idem.key.as_str()))?
                && records::decode::<IdempotencyRecord>(v.value())?.expires_ms > self.now
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Settle a pending request of `tenant`. A request of another tenant, or one already
    /// settled, is left alone (first answer wins).
    fn settle(
        &mut self,
        tenant: &TenantId,
        id: RequestId,
        status: RequestStatus,
    ) -> Result<(), Error> {
        let Some(mut rec) = (match self.requests.get(id.0)? {
            Some(v) => Some(records::decode::<RequestRecord>(v.value())?),
            None => None,
        }) else {
            return Ok(());
        };
        if !rec.status.is_pending() || &rec.actor.tenant != tenant {
            return Ok(());
        }
        rec.status = status.clone();
        rec.settled_ms = Some(self.now);
        if let Some(url) = &rec.callback_url {
            rec.callback = Some(CallbackStatus::Pending { attempts: 0 });
            self.outbox_add(Delivery::Callback {
                request: id.0,
                url: url.clone(),
            })?;
        }
        self.requests
            .insert(id.0, records::encode(&rec).as_slice())?;
        self.notices.push(Notice::Settled(id, status));
        Ok(())
    }

    fn reply(
        &mut self,
        from: &ActorId,
        to: ReplyTo,
        outcome: Result<Vec<u8>, String>,
        refusal: Option<RefusalCode>,
    ) -> Result<(), Error> {
        match to {
            ReplyTo::Request(id) => {
                let status = match outcome {
                    Ok(reply) => RequestStatus::Completed { reply },
                    Err(error) => RequestStatus::Failed { error, refusal },
                };
                self.settle(&from.tenant, id, status)
            }
            ReplyTo::Actor { actor, correlation } => {
                let env = Envelope {
                    kind: MessageKind::AskReply {
                        correlation,
                        outcome,
                    },
                    body: Vec::new(),
                    enqueued_ms: self.now,
                };
                self.enqueue_or_log(&actor, &env)
            }
        }
    }

    /// Deliver a message a turn sent. One that cannot be delivered is not lost silently:
    /// an ask is answered with an error (the asker handles it like any refusal); a
    /// one-way send is logged.
    fn enqueue_or_log(&mut self, actor: &ActorId, env: &Envelope) -> Result<(), Error> {
        let why = match self.enqueue(actor, env)? {
            EnqueueAck::Accepted { .. } => return Ok(()),
            EnqueueAck::ActorCompleted => format!("the process of actor {actor} is complete"),
            EnqueueAck::UnknownModule => format!("no module named {:?}", actor.module),
            EnqueueAck::ActorQuota(max) => format!("this tenant may have at most {max} actors"),
            other => format!("not delivered: {other:?}"),
        };
        match &env.kind {
            MessageKind::Ask { from, correlation } => {
                let answer = Envelope {
                    kind: MessageKind::AskReply {
                        correlation: correlation.clone(),
                        outcome: Err(why),
                    },
                    body: Vec::new(),
                    enqueued_ms: self.now,
                };
                if !matches!(self.enqueue(from, &answer)?, EnqueueAck::Accepted { .. }) {
                    tracing::warn!(%actor, asker = %from, "the answer to an undeliverable ask was not delivered either");
                }
            }
            _ => tracing::warn!(%actor, %why, "message from a turn not delivered"),
        }
        Ok(())
    }

    /// Commit a runner's batch: the outcomes of its mailbox turns, then its inline turns
    /// (see [`InlineTurn`]), then their replies and outgoing messages.
    fn commit_turns(
        &mut self,
        actor: &ActorId,
        turns: Vec<CommittedTurn>,
        inline: Vec<InlineTurn>,
        expect: Option<Expect>,
        staged: Option<Staged>,
        answers: &mut Vec<Answer>,
    ) -> Result<TurnsAck, Error> {
        let ack = self.commit_turns_inner(actor, turns, inline, expect, staged, answers);
        // Slices of a snapshot that was not applied are dropped with the batch (a no-op
        // when the turn's commit took them).
        if let Some(staged) = staged {
            self.large.unstage(staged.state.id)?;
        }
        ack
    }

    fn commit_turns_inner(
        &mut self,
        actor: &ActorId,
        turns: Vec<CommittedTurn>,
        inline: Vec<InlineTurn>,
        expect: Option<Expect>,
        staged: Option<Staged>,
        answers: &mut Vec<Answer>,
    ) -> Result<TurnsAck, Error> {
        let key = actor.storage_key();
        let carries = |c: Carrier| staged.filter(|s| s.carrier == c).map(|s| s.state);
        let existing = self.meta(&key)?;
        let existed = existing.is_some();
        let mut meta = match existing {
            Some(m) => m,
            None if turns.is_empty() && !inline.is_empty() => match self.new_actor(actor)? {
                Ok(m) => m,
                Err(refused) => {
                    for it in inline {
                        answers.push(Answer::Enqueue(it.done, refused.clone()));
                    }
                    return Ok(TurnsAck {
                        meta: None,
                        inline_applied: false,
                    });
                }
            },
            None if turns.is_empty() => {
                return Ok(TurnsAck {
                    meta: None,
                    inline_applied: true,
                });
            }
            None => {
                return Err(Error::Corrupt(format!(
                    "turn committed for unknown actor {key}"
                )));
            }
        };
        let mut out = TurnOutput::default();
        for (i, turn) in turns.into_iter().enumerate() {
            // Exactly once: a turn whose message is no longer the head was committed before.
            if turn.seq != meta.head_seq {
                tracing::warn!(%actor, seq = turn.seq, head = meta.head_seq, "stale turn ignored");
                continue;
            }
            let env: Envelope = match self.mailbox.remove((key.as_str(), turn.seq))? {
                Some(raw) => records::decode(raw.value())?,
                None => continue,
            };
            self.apply_turn(actor, &key, &mut meta, turn.seq, env, turn.result, &mut out)?;
            if let Some(r) = carries(Carrier::Turn(i)) {
                out.new_state = None;
                out.new_ref = Some(r);
            }
        }

        // Inline turns apply only to the actor exactly as the runner saw it, with no
        // mailbox message ahead of them, and only all together (only the last one carries
        // the state snapshot): otherwise each is enqueued instead, its outcome discarded.
        // Those the runner could not run come last and are always enqueued.
        let mut inline = inline;
        let run = inline
            .iter()
            .position(|it| it.result.is_none())
            .unwrap_or(inline.len());
        let mut fallback = inline.split_off(run);
        let mut applied_all = fallback.is_empty();
        if !inline.is_empty() {
            let seen = expect.as_ref().is_some_and(|e| {
                e.head_seq == meta.head_seq
                    && e.digest == meta.digest
                    && match e.created_ms {
                        Some(c) => existed && c == meta.created_ms,
                        None => !existed,
                    }
            });
            let applies = seen
                && meta.status == ActorStatus::Active
                && !self.has_mail(&key)?
                && self.fresh_keys(actor, &inline)?;
            if applies {
                let tenant = actor.tenant.0.as_str();
                for (j, it) in inline.into_iter().enumerate() {
                    let Some(result) = it.result else { continue };
                    if let (Some(due), MessageKind::Timer { name }) =
                        (it.timer, &it.req.envelope.kind)
                    {
                        self.take_timer(due, &key, name, &mut meta)?;
                    }
                    let seq = meta.head_seq;
                    if let Some(idem) = &it.req.idempotency {
                        self.put_idempotency(tenant, idem, actor, it.req.request.as_ref(), seq)?;
                    }
                    if let Some(new) = it.req.request {
                        self.put_request(actor, new)?;
                    }
                    self.apply_turn(
                        actor,
                        &key,
                        &mut meta,
                        seq,
                        it.req.envelope,
                        result,
                        &mut out,
                    )?;
                    if let Some(r) = carries(Carrier::Inline(j)) {
                        out.new_state = None;
                        out.new_ref = Some(r);
                    }
                    answers.push(Answer::Enqueue(it.done, EnqueueAck::Accepted { seq }));
                }
            } else {
                applied_all = false;
                inline.append(&mut fallback);
                fallback = inline;
            }
        }

        if let Some(state) = out.new_state.take() {
            self.state_bytes += state.len() as u64;
            self.states.insert(key.as_str(), state.as_slice())?;
            self.large.clear_ref(&key)?;
        } else if let Some(r) = out.new_ref.take() {
            self.states.remove(key.as_str())?;
            self.large.set_ref(&key, r)?;
        }
        self.actors
            .insert(key.as_str(), records::encode(&meta).as_slice())?;
        for (to, outcome, refusal) in out.replies {
            self.reply(actor, to, outcome, refusal)?;
        }
        for (to, env) in out.outgoing {
            self.enqueue_or_log(&to, &env)?;
        }
        for it in fallback {
            let ack = match (it.timer, &it.req.envelope.kind) {
                (Some(due), MessageKind::Timer { name }) => {
                    self.fire_one(due, &key, name)?;
                    EnqueueAck::Accepted { seq: 0 }
                }
                _ => self.enqueue_request(it.req)?,
            };
            answers.push(Answer::Enqueue(it.done, ack));
        }
        // Later writes in this op (messages to itself, the fall-back enqueues) append to
        // the mailbox of an existing actor and leave its meta as written above.
        Ok(TurnsAck {
            meta: Some(meta),
            inline_applied: applied_all,
        })
    }

    /// Dequeue bookkeeping and effects of one turn, on `meta` (written by the caller).
    #[allow(clippy::too_many_arguments)]
    fn apply_turn(
        &mut self,
        actor: &ActorId,
        key: &str,
        meta: &mut ActorMeta,
        seq: u64,
        env: Envelope,
        result: TurnResult,
        out: &mut TurnOutput,
    ) -> Result<(), Error> {
        meta.head_seq = seq + 1;
        meta.updated_ms = self.now;
        match result {
            TurnResult::Done { state, effects } => {
                meta.turns += 1;
                // Within a batch only the last successful turn carries the snapshot;
                // earlier ones carry an empty vector (never a valid MessagePack value).
                if !state.is_empty() {
                    out.new_state = Some(state);
                    out.new_ref = None;
                }
                for effect in effects {
                    match effect {
                        Effect::Reply {
                            to,
                            outcome,
                            refusal,
                        } => out.replies.push((to, outcome, refusal)),
                        Effect::Send { to, body } => out.outgoing.push((
                            to,
                            Envelope {
                                kind: MessageKind::Event,
                                body,
                                enqueued_ms: self.now,
                            },
                        )),
                        Effect::Ask {
                            to,
                            body,
                            correlation,
                        } => out.outgoing.push((
                            to,
                            Envelope {
                                kind: MessageKind::Ask {
                                    from: actor.clone(),
                                    correlation,
                                },
                                body,
                                enqueued_ms: self.now,
                            },
                        )),
                        Effect::Complete => {
                            meta.status = ActorStatus::Completed;
                            self.cancel_all_timers(key, meta)?;
                        }
                        // A completed process has no timers (`Complete` cancelled them);
                        // one set after it in the same turn would never be handled.
                        Effect::SetTimer { .. } if meta.status == ActorStatus::Completed => {}
                        Effect::SetTimer {
                            name,
                            due_ms,
                            payload,
                        } => self.set_timer(key, meta, &name, due_ms, &payload)?,
                        Effect::CancelTimer { name } => self.cancel_timer(key, meta, &name)?,
                        Effect::HttpCall(spec) => {
                            let call_id = spec.call_id.clone();
                            let id = self.outbox_add(Delivery::Http {
                                actor: actor.clone(),
                                spec,
                            })?;
                            self.http_pending.insert((key, call_id.as_str()), id)?;
                        }
                    }
                }
            }
            TurnResult::Refused { error, refusal } => match Self::answer_to(&env) {
                // An answer, not a failure: the caller hears the refusal; the state and
                // the dead letters stay as they were.
                Some(to) => out.replies.push((to, Err(error), Some(refusal))),
                // Nobody to tell (an event, a timer…): kept where an operator sees it.
                None => {
                    let error = format!("refused by the actor ({}): {error}", refusal.as_str());
                    self.dead_letter(key, meta, seq, env, error, 1)?;
                }
            },
            TurnResult::DeadLetter { error, attempts } => {
                if let Some(to) = Self::answer_to(&env) {
                    out.replies.push((to, Err(error.clone()), None));
                }
                self.dead_letter(key, meta, seq, env, error, attempts)?;
            }
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        key: &str,
        meta: &mut ActorMeta,
        seq: u64,
        envelope: Envelope,
        error: String,
        attempts: u32,
    ) -> Result<(), Error> {
        meta.dead_letters += 1;
        let dl = DeadLetter {
            envelope,
            error,
            attempts,
            at_ms: self.now,
        };
        self.dead
            .insert((key, seq), records::encode(&dl).as_slice())?;
        Ok(())
    }

    /// Who waits for an answer to this message: a request's caller or an asking actor.
    fn answer_to(env: &Envelope) -> Option<ReplyTo> {
        match &env.kind {
            MessageKind::Request { request } => Some(ReplyTo::Request(*request)),
            MessageKind::Ask { from, correlation } => Some(ReplyTo::Actor {
                actor: from.clone(),
                correlation: correlation.clone(),
            }),
            _ => None,
        }
    }

    fn set_timer(
        &mut self,
        key: &str,
        meta: &mut ActorMeta,
        name: &str,
        due: UnixMs,
        payload: &[u8],
    ) -> Result<(), Error> {
        let old = self.timer_index.get((key, name))?.map(|v| v.value());
        match old {
            Some(old_due) => {
                self.timers.remove((old_due, key, name))?;
                self.notices.push(Notice::TimerGone((
                    old_due,
                    key.to_owned(),
                    name.to_owned(),
                )));
            }
            // The per-actor limit was decided when the turn ran (the guest heard a
            // refusal then); a timer the turn was told it has is always stored.
            None => meta.timers += 1,
        }
        self.timers.insert((due, key, name), payload)?;
        self.timer_index.insert((key, name), due)?;
        self.notices.push(Notice::TimerSet {
            key: (due, key.to_owned(), name.to_owned()),
            payload: payload.to_vec(),
        });
        Ok(())
    }

    fn cancel_timer(&mut self, key: &str, meta: &mut ActorMeta, name: &str) -> Result<(), Error> {
        let old = self.timer_index.remove((key, name))?.map(|v| v.value());
        if let Some(due) = old {
            self.timers.remove((due, key, name))?;
            meta.timers = meta.timers.saturating_sub(1);
            self.notices
                .push(Notice::TimerGone((due, key.to_owned(), name.to_owned())));
        }
        Ok(())
    }

    fn cancel_all_timers(&mut self, key: &str, meta: &mut ActorMeta) -> Result<(), Error> {
        let mut names = Vec::new();
        for entry in self.timer_index.range((key, "")..(key, NAME_END))? {
            let (k, _) = entry?;
            names.push(k.value().1.to_owned());
        }
        for name in names {
            self.cancel_timer(key, meta, &name)?;
        }
        Ok(())
    }

    /// Move every timer due at or before `now` (at most `max`) into its actor's mailbox.
    fn fire_timers(&mut self, now: UnixMs, max: usize) -> Result<usize, Error> {
        let mut due = Vec::new();
        for entry in self.timers.range(..(now.saturating_add(1), "", ""))? {
            let (k, _) = entry?;
            let (d, actor, name) = k.value();
            due.push((d, actor.to_owned(), name.to_owned()));
            if due.len() >= max {
                break;
            }
        }
        for (d, actor_key, name) in &due {
            self.fire_one(*d, actor_key, name)?;
        }
        Ok(due.len())
    }

    /// Move one timer into its actor's mailbox, if it is still pending; `true` if it was.
    fn fire_one(&mut self, due: UnixMs, actor_key: &str, name: &str) -> Result<bool, Error> {
        let Some(payload) = self
            .timers
            .remove((due, actor_key, name))?
            .map(|v| v.value().to_vec())
        else {
            return Ok(false);
        };
        self.timer_index.remove((actor_key, name))?;
        self.notices.push(Notice::TimerGone((
            due,
            actor_key.to_owned(),
            name.to_owned(),
        )));
        let Some(actor) = ActorId::from_storage_key(actor_key) else {
            return Ok(true);
        };
        let env = Envelope {
            kind: MessageKind::Timer {
                name: name.to_owned(),
            },
            body: payload,
            enqueued_ms: self.now,
        };
        let ack = self.enqueue_with(&actor, &env, |m| {
            m.timers = m.timers.saturating_sub(1);
            true
        })?;
        if !matches!(ack, EnqueueAck::Accepted { .. }) {
            tracing::debug!(%actor, ?ack, "timer of an inactive actor dropped");
        }
        Ok(true)
    }

    /// Remove a pending timer whose turn is being committed inline.
    fn take_timer(
        &mut self,
        due: UnixMs,
        key: &str,
        name: &str,
        meta: &mut ActorMeta,
    ) -> Result<(), Error> {
        if self.timers.remove((due, key, name))?.is_some() {
            self.timer_index.remove((key, name))?;
            meta.timers = meta.timers.saturating_sub(1);
        }
        Ok(())
    }

    fn outbox_add(&mut self, delivery: Delivery) -> Result<u128, Error> {
        let id: u128 = rand::random();
        let entry = OutboxEntry {
            delivery,
            due_ms: self.now,
            attempts: 0,
            created_ms: self.now,
            last_error: None,
        };
        self.outbox.insert(id, records::encode(&entry).as_slice())?;
        self.outbox_due.insert((self.now, id), ())?;
        self.notices.push(Notice::Outbox);
        Ok(id)
    }

    fn outbox_update(&mut self, id: u128, update: OutboxUpdate) -> Result<(), Error> {
        let Some(mut entry) = (match self.outbox.get(id)? {
            Some(v) => Some(records::decode::<OutboxEntry>(v.value())?),
            None => None,
        }) else {
            return Ok(());
        };
        self.outbox_due.remove((entry.due_ms, id))?;
        entry.attempts += 1;
        match update {
            OutboxUpdate::Retry { due, error } => {
                entry.due_ms = due;
                entry.last_error = Some(error);
                if let Delivery::Callback { request, .. } = &entry.delivery {
                    let attempts = entry.attempts;
                    self.callback_status(*request, CallbackStatus::Pending { attempts })?;
                }
                self.outbox.insert(id, records::encode(&entry).as_slice())?;
                self.outbox_due.insert((due, id), ())?;
                self.notices.push(Notice::Outbox);
            }
            OutboxUpdate::Finish { result, callback } => {
                self.outbox.remove(id)?;
                match &entry.delivery {
                    Delivery::Http { actor, spec } => {
                        let key = actor.storage_key();
                        let current = self
                            .http_pending
                            .get((key.as_str(), spec.call_id.as_str()))?
                            .map(|v| v.value());
                        if current == Some(id) {
                            self.http_pending
                                .remove((key.as_str(), spec.call_id.as_str()))?;
                        }
                        if let Some(env) = result {
                            self.enqueue_or_log(actor, &env)?;
                        }
                    }
                    Delivery::Callback { request, .. } => {
                        if let Some(status) = callback {
                            self.callback_status(*request, status)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn callback_status(&mut self, request: u128, status: CallbackStatus) -> Result<(), Error> {
        let Some(mut rec) = (match self.requests.get(request)? {
            Some(v) => Some(records::decode::<RequestRecord>(v.value())?),
            None => None,
        }) else {
            return Ok(());
        };
        rec.callback = Some(status);
        self.requests
            .insert(request, records::encode(&rec).as_slice())?;
        Ok(())
    }

    /// Forget idempotency keys that expired by `now` (at most `max`), oldest first.
    fn purge(&mut self, now: UnixMs, max: usize) -> Result<usize, Error> {
        let mut expired = Vec::new();
        for entry in self.idem_expiry.range(..(now, "", ""))? {
            let (k, _) = entry?;
            let (at, tenant, key) = k.value();
            expired.push((at, tenant.to_owned(), key.to_owned()));
            if expired.len() >= max {
                break;
            }
        }
        for (at, tenant, key) in &expired {
            self.idem_expiry
                .remove((*at, tenant.as_str(), key.as_str()))?;
            let current: Option<IdempotencyRecord> =
                match self.idem.get((tenant.as_str(), key.as_str()))? {
                    Some(v) => Some(records::decode(v.value())?),
                    None => None,
                };
            if current.is_some_and(|r| r.expires_ms == *at) {
                self.idem.remove((tenant.as_str(), key.as_str()))?;
            }
        }
        Ok(expired.len())
    }

    fn admin(&mut self, op: AdminOp) -> Result<bool, Error> {
        match op {
            AdminOp::PutTenant {
                name,
                record,
                create_only,
            } => {
                if create_only && self.tenants.get(name.as_str())?.is_some() {
                    return Ok(false);
                }
                if let Some(id) = &record.id {
                    self.tenant_ids.insert(id.as_str(), name.as_str())?;
                }
                self.tenants
                    .insert(name.as_str(), records::encode(&record).as_slice())?;
                Ok(true)
            }
            AdminOp::DeleteTenant { name } => {
                let record: TenantRecord = match self.tenants.remove(name.as_str())? {
                    Some(v) => records::decode(v.value())?,
                    None => return Ok(false),
                };
                let tenant = record.id.unwrap_or(name);
                self.tenant_ids.remove(tenant.as_str())?;
                let mut ids = Vec::new();
                for entry in self.keys.iter()? {
                    let (k, v) = entry?;
                    let rec: KeyRecord = records::decode(v.value())?;
                    if rec.tenant == tenant {
                        ids.push(k.value().to_owned());
                    }
                }
                for id in ids {
                    self.keys.remove(id.as_str())?;
                }
                // Everything else of the tenant is purged in the background, in batches;
                // the job is durable, so a restart resumes it.
                let job = records::encode(&PurgeJob::default());
                self.meta_table
                    .insert(format!("{PURGE_PREFIX}{tenant}").as_str(), job.as_slice())?;
                let prefix = format!("{tenant}/");
                let mut modules = Vec::new();
                for entry in self.modules.range(prefix.as_str()..)? {
                    let (k, _) = entry?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    modules.push(k.value().to_owned());
                }
                for m in modules {
                    self.modules.remove(m.as_str())?;
                }
                Ok(true)
            }
            AdminOp::PutKey { id, record } => {
                self.keys
                    .insert(id.as_str(), records::encode(&record).as_slice())?;
                Ok(true)
            }
            AdminOp::DeleteKey { tenant, id } => {
                let owner = match self.keys.get(id.as_str())? {
                    Some(v) => Some(records::decode::<KeyRecord>(v.value())?.tenant),
                    None => None,
                };
                if owner.as_deref() != Some(tenant.as_str()) {
                    return Ok(false);
                }
                self.keys.remove(id.as_str())?;
                Ok(true)
            }
            AdminOp::PutMeta { key, value } => {
                self.meta_table.insert(key.as_str(), value.as_slice())?;
                Ok(true)
            }
            AdminOp::DeleteModule { tenant, name } => {
                let key = format!("{tenant}/{name}");
                Ok(self.modules.remove(key.as_str())?.is_some())
            }
            AdminOp::DeleteActor { actor } => self.delete_actor(&actor),
            AdminOp::PurgeTenant { id, max } => self.purge_tenant(&id, max),
            AdminOp::RetryDeadLetter {
                actor,
                seq,
                new_request,
            } => {
                let key = actor.storage_key();
                let dl: Option<DeadLetter> = match self.dead.remove((key.as_str(), seq))? {
                    Some(raw) => Some(records::decode(raw.value())?),
                    None => None,
                };
                let Some(dl) = dl else { return Ok(false) };
                let mut env = dl.envelope;
                env.enqueued_ms = self.now;
                let request = match &mut env.kind {
                    MessageKind::Request { request } => {
                        *request = new_request;
                        Some(NewRequest {
                            id: new_request,
                            callback_url: None,
                        })
                    }
                    _ => None,
                };
                let ack = self.enqueue_request(EnqueueRequest {
                    actor: actor.clone(),
                    envelope: env,
                    request,
                    idempotency: None,
                })?;
                Ok(matches!(ack, EnqueueAck::Accepted { .. }))
            }
        }
    }

    /// One batch of a deleted tenant's purge (see [`AdminOp::PurgeTenant`]): actors
    /// first, then idempotency keys, then a scan of the outbox and of the requests.
    fn purge_tenant(&mut self, id: &str, max: usize) -> Result<bool, Error> {
        let job_key = format!("{PURGE_PREFIX}{id}");
        let mut job: PurgeJob = match self.meta_table.get(job_key.as_str())? {
            Some(v) => records::decode(v.value())?,
            None => return Ok(false),
        };
        let prefix = format!("{id}/");
        let mut budget = max.max(1);
        // Actors, with everything keyed by the actor.
        let mut actors = Vec::new();
        for entry in self.actors.range(prefix.as_str()..)? {
            let key = entry?.0.value().to_owned();
            if !key.starts_with(&prefix) || actors.len() >= budget {
                break;
            }
            actors.push(key);
        }
        for key in &actors {
            self.purge_actor(key)?;
        }
        budget -= actors.len().min(budget);
        if budget == 0 {
            return Ok(true);
        }
        self.tenant_actors.remove(id)?;
        // Idempotency keys.
        let mut keys = Vec::new();
        for entry in self.idem.range((id, "")..)? {
            let (k, v) = entry?;
            if k.value().0 != id || keys.len() >= budget {
                break;
            }
            let rec: IdempotencyRecord = records::decode(v.value())?;
            keys.push((k.value().1.to_owned(), rec.expires_ms));
        }
        for (key, expires) in &keys {
            self.idem.remove((id, key.as_str()))?;
            self.idem_expiry.remove((*expires, id, key.as_str()))?;
        }
        budget -= keys.len().min(budget);
        if budget == 0 {
            return Ok(true);
        }
        // The outbox, then the requests: keyed by id, so scanned from a cursor.
        let owned = |actor: &ActorId| actor.tenant.0 == id;
        while job.phase < 2 && budget > 0 {
            let mut scanned = Vec::new();
            if job.phase == 0 {
                for entry in self.outbox.range(job.cursor..)? {
                    let (k, v) = entry?;
                    if scanned.len() >= budget {
                        break;
                    }
                    let e: OutboxEntry = records::decode(v.value())?;
                    let mine = match &e.delivery {
                        Delivery::Http { actor, .. } => owned(actor),
                        Delivery::Callback { request, .. } => match self.requests.get(*request)? {
                            Some(r) => owned(&records::decode::<RequestRecord>(r.value())?.actor),
                            None => false,
                        },
                    };
                    scanned.push((k.value(), mine.then_some(e.due_ms)));
                }
                for (oid, due) in &scanned {
                    if let Some(due) = due {
                        self.outbox.remove(*oid)?;
                        self.outbox_due.remove((*due, *oid))?;
                    }
                }
            } else {
                for entry in self.requests.range(job.cursor..)? {
                    let (k, v) = entry?;
                    if scanned.len() >= budget {
                        break;
                    }
                    let mine = owned(&records::decode::<RequestRecord>(v.value())?.actor);
                    scanned.push((k.value(), mine.then_some(0)));
                }
                for (rid, mine) in &scanned {
                    if mine.is_some() {
                        self.requests.remove(*rid)?;
                    }
                }
            }
            budget -= scanned.len().min(budget);
            match scanned.last() {
                Some((last, _)) if budget == 0 => job.cursor = last.saturating_add(1),
                _ => {
                    job.phase += 1;
                    job.cursor = 0;
                }
            }
        }
        if job.phase >= 2 {
            self.meta_table.remove(job_key.as_str())?;
            return Ok(false);
        }
        self.meta_table
            .insert(job_key.as_str(), records::encode(&job).as_slice())?;
        Ok(true)
    }

    /// Remove an actor of a deleted tenant and everything keyed by it, answering no one.
    fn purge_actor(&mut self, key: &str) -> Result<(), Error> {
        let Some(mut meta) = self.meta(key)? else {
            return Ok(());
        };
        let mut seqs = Vec::new();
        for entry in self.mailbox.range((key, 0)..=(key, u64::MAX))? {
            seqs.push(entry?.0.value().1);
        }
        for seq in seqs {
            self.mailbox.remove((key, seq))?;
        }
        let mut dead = Vec::new();
        for entry in self.dead.range((key, 0)..=(key, u64::MAX))? {
            dead.push(entry?.0.value().1);
        }
        for seq in dead {
            self.dead.remove((key, seq))?;
        }
        self.cancel_all_timers(key, &mut meta)?;
        let mut calls = Vec::new();
        for entry in self.http_pending.range((key, "")..)? {
            let (k, _) = entry?;
            if k.value().0 != key {
                break;
            }
            calls.push(k.value().1.to_owned());
        }
        for call in calls {
            self.http_pending.remove((key, call.as_str()))?;
        }
        self.states.remove(key)?;
        self.large.clear_ref(key)?;
        self.actors.remove(key)?;
        Ok(())
    }

    fn delete_actor(&mut self, actor: &ActorId) -> Result<bool, Error> {
        let key = actor.storage_key();
        let Some(mut meta) = self.meta(&key)? else {
            return Ok(false);
        };
        let mut failed = Vec::new();
        let mut seqs = Vec::new();
        for entry in self
            .mailbox
            .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?
        {
            let (k, v) = entry?;
            seqs.push(k.value().1);
            if let Envelope {
                kind: MessageKind::Request { request },
                ..
            } = records::decode(v.value())?
            {
                failed.push(request);
            }
        }
        for seq in seqs {
            self.mailbox.remove((key.as_str(), seq))?;
        }
        self.cancel_all_timers(&key, &mut meta)?;
        let mut dead = Vec::new();
        for entry in self
            .dead
            .range((key.as_str(), 0)..(key.as_str(), u64::MAX))?
        {
            dead.push(entry?.0.value().1);
        }
        for seq in dead {
            self.dead.remove((key.as_str(), seq))?;
        }
        self.states.remove(key.as_str())?;
        self.large.clear_ref(&key)?;
        self.actors.remove(key.as_str())?;
        let tenant = actor.tenant.0.as_str();
        let count = self
            .tenant_actors
            .get(tenant)?
            .map(|v| v.value())
            .unwrap_or(0);
        self.tenant_actors.insert(tenant, count.saturating_sub(1))?;
        for id in failed {
            self.settle(
                &actor.tenant,
                id,
                RequestStatus::Failed {
                    error: format!("actor {actor} was deleted"),
                    refusal: None,
                },
            )?;
        }
        Ok(true)
    }

    fn put_module(
        &mut self,
        tenant: &TenantId,
        name: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(ModuleVersion, bool), Error> {
        let key = format!("{}/{}", tenant.0, name);
        let mut rec: ModuleRecord = match self.modules.get(key.as_str())? {
            Some(v) => records::decode(v.value())?,
            None => ModuleRecord::default(),
        };
        if let Some(latest) = rec.latest()
            && latest.digest == digest
        {
            return Ok((latest.clone(), false));
        }
        if self.blobs.get(digest)?.is_none() {
            self.blobs.insert(digest, bytes)?;
        }
        let v = ModuleVersion {
            version: rec.latest().map(|l| l.version + 1).unwrap_or(1),
            digest: digest.to_owned(),
            size: bytes.len() as u64,
            created_ms: self.now,
        };
        rec.versions.push(v.clone());
        self.modules
            .insert(key.as_str(), records::encode(&rec).as_slice())?;
        Ok((v, true))
    }
}

//! The store: everything durable, in one redb file (`<data>/dwell.redb`) by default or
//! in PostgreSQL (`--store postgres://…`).
//! Long because it is the engine's whole storage interface, one small method per need.
//!
//! Reads go through the contract's read side ([`dwell_storage::Reads`]: on redb a read
//! transaction on the caller's thread; on PostgreSQL a reader thread's connection).
//! Every write goes through
//! the single writer task ([`writer`]), which applies many operations — enqueues, turn
//! outcomes, module uploads — in one write transaction and one fsync (group commit), and
//! only then answers the callers and tells the [`PostCommit`] hook what became durable.
//! The backend is any [`dwell_storage::Backend`] with its [`dwell_storage::Reads`]; the
//! binary opens one (redb or PostgreSQL) and hands it to [`Store::open`].

mod writer;

use dwell_storage::faults::Faults;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use dwell_storage::{Backend, Carrier, LARGE, SLICE, Staged, StateRef};
use tokio::sync::{mpsc, oneshot};

use crate::domain::history::Retention;
use crate::domain::{ActorId, Envelope, RequestId, TenantId, TimerNames, UnixMs};

pub use crate::domain::records::{
    ActorMeta, CallbackStatus, DeadLetter, Delivery, KeyRecord, ModuleRecord, ModuleVersion,
    OutboxEntry, PURGE_PREFIX, RequestRecord, TenantRecord,
};
pub use writer::{
    AdminOp, Closed, CommittedTurn, EnqueueAck, EnqueueDone, EnqueueRequest, Expect, Idempotency,
    InlineTurn, NewRequest, Notice, OutboxUpdate, PostCommit, TimerKey, TurnsAck, WriterConfig,
    WriterStats,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    #[error("the writer's queue is full")]
    Overloaded,
    /// The disk is full: nothing was written; writes succeed again once there is room.
    #[error("the disk holding the data file is full")]
    Full,
    /// A write failed with an I/O error; the data file is being opened again.
    #[error("the data file is being reopened after an I/O error")]
    Unavailable,
    /// Another backend failure (a conflict, a lost partition, the backend's own error).
    #[error("{0}")]
    Backend(dwell_storage::Error),
}

impl From<dwell_storage::Error> for Error {
    fn from(e: dwell_storage::Error) -> Self {
        match e {
            dwell_storage::Error::Full => Error::Full,
            dwell_storage::Error::Unavailable => Error::Unavailable,
            dwell_storage::Error::Corrupt(c) => Error::Corrupt(c),
            e => Error::Backend(e),
        }
    }
}

/// A batch of pending messages for one actor, with the state they apply to.
#[derive(Debug)]
pub struct PendingBatch {
    pub meta: ActorMeta,
    pub state: Option<Vec<u8>>,
    pub messages: Vec<(u64, Envelope)>,
    /// The names of the actor's pending timers.
    pub timers: Arc<TimerNames>,
}

/// What `GET /v1/actors/..` shows.
pub use dwell_storage::View as ActorView;

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    reads: Arc<dyn dwell_storage::Reads>,
    writer: mpsc::Sender<writer::Op>,
    closed: Arc<writer::Closed>,
    metrics: crate::metrics::WriterMetrics,
}

/// A backend opened by the binary (redb or PostgreSQL), waiting for the engine to start
/// its writer: [`Storage::new`] keeps the backend's type, the engine needs none.
pub struct Storage {
    start: Box<StartWriter>,
}

/// Starts the writer on an opened backend (see [`Store::open`]).
type StartWriter = dyn FnOnce(
        Arc<dyn PostCommit>,
        Arc<dyn crate::domain::Clock>,
        WriterConfig,
        Option<Arc<Faults>>,
    ) -> Store
    + Send;

impl Storage {
    /// `backend` is the write side, `reads` the read side of the same store.
    pub fn new<B, R>(backend: B, reads: R) -> Storage
    where
        B: Backend + Send + 'static,
        R: dwell_storage::Reads + 'static,
    {
        let reads: Arc<dyn dwell_storage::Reads> = Arc::new(reads);
        Storage {
            start: Box::new(move |hook, clock, config, faults| {
                Store::open(backend, reads, hook, clock, config, faults)
            }),
        }
    }

    /// Start the writer (see [`Store::open`]).
    pub fn start(
        self,
        hook: Arc<dyn PostCommit>,
        clock: Arc<dyn crate::domain::Clock>,
        config: WriterConfig,
        faults: Option<Arc<Faults>>,
    ) -> Store {
        (self.start)(hook, clock, config, faults)
    }
}

impl Store {
    /// Start the writer thread on `backend` (e.g. `dwell_storage_redb::open`'s or
    /// `dwell_storage_postgres::open`'s write side) with `reads` its read side. With
    /// `faults`, every write goes through the fault wrapper (tests of what the node does
    /// when storage fails; see [`dwell_storage::faults`]).
    pub fn open<B: Backend + Send + 'static>(
        backend: B,
        reads: Arc<dyn dwell_storage::Reads>,
        hook: Arc<dyn PostCommit>,
        clock: Arc<dyn crate::domain::Clock>,
        config: WriterConfig,
        faults: Option<Arc<Faults>>,
    ) -> Store {
        let closed = Arc::new(writer::Closed::default());
        let metrics = crate::metrics::WriterMetrics::default();
        let writer = writer::spawn(
            backend,
            faults,
            hook,
            clock,
            config,
            closed.clone(),
            metrics.clone(),
        );
        Store {
            reads,
            writer,
            closed,
            metrics,
        }
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> writer::Op,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// A handle to wait, at shutdown, until the writer has finished and the database is
    /// closed (which happens once every `Store` handle is dropped).
    pub fn closed(&self) -> Arc<writer::Closed> {
        self.closed.clone()
    }

    /// The writer's histograms (batch size, commit latency).
    pub fn writer_metrics(&self) -> &crate::metrics::WriterMetrics {
        &self.metrics
    }

    /// Durably enqueue one message (creating the actor if needed). Returns after fsync.
    /// Refuses at once with [`Error::Overloaded`] when the writer's queue is full
    /// (backpressure for ingress: callers get 503 rather than queueing without bound).
    pub async fn enqueue(&self, req: EnqueueRequest) -> Result<EnqueueAck, Error> {
        let (tx, rx) = oneshot::channel();
        self.try_submit(writer::Op::Enqueue { req, done: tx })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Whether the writer's queue is full (ingress answers 503 then).
    pub fn overloaded(&self) -> bool {
        self.writer.capacity() == 0
    }

    /// Durably commit the outcomes of consecutive turns of one actor.
    pub async fn commit_turns(
        &self,
        actor: ActorId,
        turns: Vec<CommittedTurn>,
        history: Retention,
    ) -> Result<(), Error> {
        self.commit_batch(actor, turns, Vec::new(), None, history)
            .await
            .map(drop)
    }

    /// Durably commit a runner's batch: its mailbox turns, then its inline turns (each
    /// inline caller is answered through its own channel).
    pub async fn commit_batch(
        &self,
        actor: ActorId,
        turns: Vec<CommittedTurn>,
        inline: Vec<InlineTurn>,
        expect: Option<Expect>,
        history: Retention,
    ) -> Result<TurnsAck, Error> {
        let answer = self
            .submit_batch(actor, turns, inline, expect, history)
            .await?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Submit a runner's batch (see [`Store::commit_batch`]) without waiting for its
    /// commit: the receiver answers once it is durable.
    pub async fn submit_batch(
        &self,
        actor: ActorId,
        turns: Vec<CommittedTurn>,
        inline: Vec<InlineTurn>,
        expect: Option<Expect>,
        history: Retention,
    ) -> Result<oneshot::Receiver<Result<TurnsAck, Error>>, Error> {
        let (mut turns, mut inline) = (turns, inline);
        let staged = self.stage_large_state(&mut turns, &mut inline).await?;
        let (done, rx) = oneshot::channel();
        self.writer
            .send(writer::Op::CommitTurns {
                actor,
                turns,
                inline,
                expect,
                staged,
                history,
                done,
            })
            .await
            .map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    /// If the batch's snapshot (carried by its last turn with a non-empty state) is
    /// larger than [`LARGE`], commit it in slices now, one writer operation each,
    /// and empty it in the turn: the batch's own commit then only points at the slices.
    async fn stage_large_state(
        &self,
        turns: &mut [CommittedTurn],
        inline: &mut [InlineTurn],
    ) -> Result<Option<Staged>, Error> {
        use crate::domain::TurnResult;
        let carrier = inline
            .iter_mut()
            .enumerate()
            .rev()
            .map(|(j, it)| (Carrier::Inline(j), it.result.as_mut()))
            .chain(
                turns
                    .iter_mut()
                    .enumerate()
                    .rev()
                    .map(|(i, t)| (Carrier::Turn(i), Some(&mut t.result))),
            )
            .find(|(_, r)| matches!(r, Some(TurnResult::Done { state, .. }) if !state.is_empty()));
        let Some((carrier, Some(TurnResult::Done { state, .. }))) = carrier else {
            return Ok(None);
        };
        if state.len() <= LARGE {
            return Ok(None);
        }
        let bytes = std::mem::take(state);
        let id = rand::random::<u64>();
        let mut slices = 0u32;
        for (index, piece) in bytes.chunks(SLICE).enumerate() {
            let index = index as u32;
            self.submit(|done| writer::Op::Stage {
                id,
                index,
                bytes: piece.to_vec(),
                done,
            })
            .await?;
            slices = index + 1;
        }
        Ok(Some(Staged {
            state: StateRef {
                id,
                len: bytes.len() as u64,
                slices,
            },
            carrier,
        }))
    }

    /// Hand an operation to the writer without waiting for room in its queue (ingress
    /// backpressure): [`Error::Overloaded`] when it is full.
    fn try_submit(&self, op: writer::Op) -> Result<(), Error> {
        let permit = self.writer.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => Error::Overloaded,
            mpsc::error::TrySendError::Closed(()) => Error::Closed,
        })?;
        permit.send(op);
        Ok(())
    }

    /// Store a module version (or return the existing one with the same digest).
    pub async fn put_module(
        &self,
        tenant: TenantId,
        name: String,
        bytes: Vec<u8>,
        digest: String,
    ) -> Result<(ModuleVersion, bool), Error> {
        self.submit(|done| writer::Op::PutModule {
            tenant,
            name,
            bytes,
            digest,
            done,
        })
        .await
    }

    /// Deleted tenants whose purge has not finished (their ids).
    pub fn purges(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .reads
            .meta_keys(PURGE_PREFIX)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(PURGE_PREFIX).map(str::to_owned))
            .collect())
    }

    /// Can the store be read, and does the writer commit? (Readiness.)
    pub async fn probe(&self) -> Result<(), Error> {
        self.meta_value("admin")?;
        // After a write failed for lack of room: is there room again?
        self.reads.room()?;
        self.submit(|done| writer::Op::Probe { done }).await
    }

    /// Writer counters, for the benchmark and diagnostics.
    pub async fn writer_stats(&self) -> Result<WriterStats, Error> {
        self.submit(|done| writer::Op::Stats { done }).await
    }

    /// Move due timers (at most `max`) into mailboxes; returns how many fired.
    pub async fn fire_timers(&self, now: UnixMs, max: usize) -> Result<usize, Error> {
        self.submit(|done| writer::Op::FireTimers { now, max, done })
            .await
    }

    /// Deliver inbox messages `ids` to this node's actors; returns how many were.
    pub async fn deliver_inbox(&self, ids: Vec<u64>) -> Result<usize, Error> {
        self.submit(|done| writer::Op::Inbox { ids, done }).await
    }

    /// Up to `max` inbox messages after `after`: `(id, actor)`.
    pub fn inbox(&self, after: Option<u64>, max: usize) -> Result<Vec<(u64, String)>, Error> {
        Ok(self.reads.inbox(after, max)?)
    }

    /// Move these timers into their actors' mailboxes, those still pending; returns how
    /// many were.
    pub async fn fire_these(&self, timers: Vec<TimerKey>) -> Result<usize, Error> {
        self.submit(|done| writer::Op::FireThese { timers, done })
            .await
    }

    /// Pending timers after `after` (all if `None`) and due at or before `until`, at
    /// most `max`, in due order, with their payloads.
    pub fn timers_after(
        &self,
        after: Option<&TimerKey>,
        until: UnixMs,
        max: usize,
    ) -> Result<Vec<(TimerKey, Vec<u8>)>, Error> {
        Ok(self.reads.timers_after(after, until, max)?)
    }

    /// Record the outcome of an outbox delivery attempt.
    pub async fn outbox_update(&self, id: u128, update: OutboxUpdate) -> Result<(), Error> {
        self.submit(|done| writer::Op::Outbox { id, update, done })
            .await
    }

    /// Forget expired idempotency keys (at most `max`); returns how many.
    pub async fn purge(&self, now: UnixMs, max: usize) -> Result<usize, Error> {
        self.submit(|done| writer::Op::Purge { now, max, done })
            .await
    }

    /// An administrative write; answers whether it changed anything.
    pub async fn admin(&self, op: AdminOp) -> Result<bool, Error> {
        self.submit(|done| writer::Op::Admin { op, done }).await
    }

    pub fn tenants(&self) -> Result<Vec<(String, TenantRecord)>, Error> {
        Ok(self.reads.tenants()?)
    }

    pub fn keys(&self) -> Result<Vec<(String, KeyRecord)>, Error> {
        Ok(self.reads.api_keys()?)
    }

    pub fn meta_value(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.reads.meta(key)?)
    }

    pub fn tenant_actor_count(&self, tenant: &str) -> Result<u64, Error> {
        Ok(self.reads.tenant_actor_count(tenant)?)
    }

    /// When the earliest pending timer is due.
    pub fn next_timer_due(&self) -> Result<Option<UnixMs>, Error> {
        Ok(self.reads.next_timer_due()?)
    }

    /// An actor's pending timers: `(name, due)`.
    pub fn timers_of(&self, actor: &ActorId) -> Result<Vec<(String, UnixMs)>, Error> {
        Ok(self.reads.timers_of(&actor.storage_key())?)
    }

    /// Outbox deliveries due at or before `now` (at most `max`), earliest first.
    pub fn outbox_due(&self, now: UnixMs, max: usize) -> Result<Vec<(u128, OutboxEntry)>, Error> {
        Ok(self.reads.outbox_due(now, max)?)
    }

    /// When the earliest outbox delivery is due.
    pub fn next_outbox_due(&self) -> Result<Option<UnixMs>, Error> {
        Ok(self.reads.next_outbox_due()?)
    }

    /// An actor's outstanding outbound HTTP calls.
    pub fn http_pending_of(&self, actor: &ActorId) -> Result<Vec<OutboxEntry>, Error> {
        Ok(self.reads.http_pending_of(&actor.storage_key())?)
    }

    pub fn actor_meta(&self, actor: &ActorId) -> Result<Option<ActorMeta>, Error> {
        Ok(self.reads.actor(&actor.storage_key())?)
    }

    /// Load up to `max` pending messages of an actor, with its meta and state.
    pub fn pending(&self, actor: &ActorId, max: usize) -> Result<Option<PendingBatch>, Error> {
        Ok(self
            .reads
            .pending(&actor.storage_key(), max)?
            .map(|p| PendingBatch {
                meta: p.meta,
                state: p.state,
                messages: p.messages,
                timers: Arc::new(p.timers.into_iter().collect()),
            }))
    }

    pub fn actor_view(&self, actor: &ActorId, dead_max: usize) -> Result<Option<ActorView>, Error> {
        Ok(self.reads.view(&actor.storage_key(), dead_max)?)
    }

    /// The read side, for the engine's own lists and history.
    pub(crate) fn reads(&self) -> &dyn dwell_storage::Reads {
        self.reads.as_ref()
    }

    pub fn request(&self, id: RequestId) -> Result<Option<RequestRecord>, Error> {
        Ok(self.reads.request(id.0)?)
    }

    /// Every module of a tenant, by name.
    pub fn modules(&self, tenant: &TenantId) -> Result<Vec<(String, ModuleRecord)>, Error> {
        let prefix = format!("{}/", tenant.0);
        Ok(self
            .reads
            .modules(&prefix)?
            .into_iter()
            .filter_map(|(k, r)| Some((k.strip_prefix(&prefix)?.to_owned(), r)))
            .collect())
    }

    /// Every module of every tenant: `(tenant/name, record)`.
    pub fn all_modules(&self) -> Result<Vec<(String, ModuleRecord)>, Error> {
        Ok(self.reads.modules("")?)
    }

    pub fn module_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.reads.module_bytes(digest)?)
    }

    /// Actors with unprocessed mail.
    pub fn ready_actors(&self) -> Result<Vec<ActorId>, Error> {
        Ok(self
            .reads
            .ready_actors()?
            .iter()
            .filter_map(|k| ActorId::from_storage_key(k))
            .collect())
    }

    /// Number of actors (all tenants).
    pub fn actor_count(&self) -> Result<u64, Error> {
        Ok(self.reads.actor_total()?)
    }

    /// Mailbox messages, pending timers and outbox entries over all actors.
    pub fn backlog(&self) -> Result<dwell_storage::Backlog, Error> {
        Ok(self.reads.backlog()?)
    }
}

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
//! This is the one place that knows redb and PostgreSQL.

mod large;
mod postgres;
mod records;
mod redb_reads;
mod redb_tables;

use dwell_storage::faults::Faults;
mod tables;
mod writer;

#[cfg(test)]
mod tests;

/// A fresh database on the PostgreSQL server at `server` (a URL without a database),
/// for tests: its URL.
#[cfg(test)]
pub(crate) fn test_database(server: &str) -> String {
    let server = server.trim_end_matches('/').to_owned();
    // The blocking client runs its own runtime: not on a tokio thread of the caller.
    std::thread::spawn(move || {
        let db = format!("dwell_test_{:016x}", rand::random::<u64>());
        let mut c = ::postgres::Client::connect(&format!("{server}/postgres"), ::postgres::NoTls)
            .expect("connect to the test PostgreSQL");
        c.batch_execute(&format!("CREATE DATABASE {db}"))
            .expect("create the test database");
        format!("{server}/{db}")
    })
    .join()
    .expect("the test database is made")
}

use std::path::Path;
use std::sync::Arc;

use redb::Database;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{ActorId, Envelope, RequestId, TenantId, TimerNames, UnixMs};

pub use records::{
    ActorMeta, CallbackStatus, DeadLetter, Delivery, KeyRecord, ModuleRecord, ModuleVersion,
    OutboxEntry, PURGE_PREFIX, RequestRecord, TenantRecord,
};
pub use writer::{
    AdminOp, Closed, CommittedTurn, EnqueueAck, EnqueueDone, EnqueueRequest, Expect, Idempotency,
    InlineTurn, NewRequest, Notice, OutboxUpdate, PostCommit, TimerKey, TurnsAck, WriterConfig,
    WriterStats,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: {0}")]
    Storage(#[from] redb::Error),
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
    #[error("cannot open data directory: {0}")]
    Io(#[from] std::io::Error),
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

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Storage(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

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
    /// The redb file (`None` on PostgreSQL).
    db: Option<Arc<DbCell>>,
    reads: Arc<dyn dwell_storage::Reads>,
    writer: mpsc::Sender<writer::Op>,
    closed: Arc<writer::Closed>,
}

/// The open data file. After an I/O error redb refuses every operation until the file is
/// opened again, so the handle lives here and the writer reopens it in place (a full disk
/// that gets room again needs no restart); readers take the current handle per call.
pub(crate) struct DbCell {
    path: std::path::PathBuf,
    current: std::sync::RwLock<Option<Arc<Database>>>,
    /// The last write failed for lack of space (and none has succeeded since).
    pub(crate) full: std::sync::atomic::AtomicBool,
    /// Faults put in on purpose (tests only; see [`Store::open_with_faults`]).
    pub(crate) faults: Option<Arc<Faults>>,
}

impl DbCell {
    pub(crate) fn get(&self) -> Result<Arc<Database>, Error> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::Unavailable)
    }

    /// Close the file and open it again (redb repairs it if needed). `Err` while it
    /// cannot be opened yet; the writer tries again before its next batch.
    pub(crate) fn reopen(&self) -> Result<(), Error> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = current.take() {
            // Readers hold a handle only for one call: wait for them, briefly.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        *current = Some(Arc::new(open_database(&self.path)?));
        tracing::info!("the data file is open again");
        Ok(())
    }
}

/// Create `file` whole or not at all: redb refuses to open a file killed between its
/// first resize and its header write ("magic number mismatch"), so the database is made
/// under another name and renamed into place once it is on disk.
fn create_database_file(dir: &Path, file: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let new = dir.join("dwell.redb.new");
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&new)?;
    drop(open_database(&new)?);
    std::fs::File::open(&new)?.sync_all()?;
    std::fs::rename(&new, file)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn open_database(path: &Path) -> Result<Database, Error> {
    let db = Database::builder()
        .set_cache_size(128 << 20)
        .set_repair_callback(|session| {
            if session.progress() == 0.0 {
                tracing::warn!("the data file was not closed cleanly; repairing it");
            }
        })
        .create(path)?;
    let txn = db.begin_write()?;
    tables::create_all(&txn)?;
    large::create_all(&txn)?;
    txn.commit()?;
    Ok(db)
}

impl Store {
    /// Open (or create) `<dir>/dwell.redb` and start the writer thread.
    pub fn open(
        dir: &Path,
        hook: Arc<dyn PostCommit>,
        clock: Arc<dyn crate::domain::Clock>,
        config: WriterConfig,
    ) -> Result<Store, Error> {
        Self::open_with_faults(dir, hook, clock, config, None)
    }

    /// [`Store::open`], with every write going through `faults` (tests of what the node
    /// does when storage fails; see [`dwell_storage::faults`]).
    pub fn open_with_faults(
        dir: &Path,
        hook: Arc<dyn PostCommit>,
        clock: Arc<dyn crate::domain::Clock>,
        config: WriterConfig,
        faults: Option<Arc<Faults>>,
    ) -> Result<Store, Error> {
        // Owner only: the directory 0700 and the data file 0600, whatever the umask, and
        // tightened on every start for directories made before.
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            let file = dir.join("dwell.redb");
            if std::fs::metadata(&file)
                .map(|m| m.len() == 0)
                .unwrap_or(true)
            {
                create_database_file(dir, &file)?;
            }
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
        let path = dir.join("dwell.redb");
        let database = open_database(&path)?;
        {
            // Slices staged by batches that never committed (see [`large`]).
            let txn = database.begin_write()?;
            let dropped = large::LargeTables::open(&txn)?.unstage_all()?;
            txn.commit()?;
            if dropped > 0 {
                tracing::info!(dropped, "dropped large states staged before a crash");
            }
        }
        let db = Arc::new(DbCell {
            current: std::sync::RwLock::new(Some(Arc::new(database))),
            path,
            full: std::sync::atomic::AtomicBool::new(false),
            faults,
        });
        let closed = Arc::new(writer::Closed::default());
        let writer = writer::spawn(
            writer::Side::Redb(db.clone()),
            hook,
            clock,
            config,
            closed.clone(),
        );
        let reads = Arc::new(redb_reads::RedbReads { db: db.clone() });
        Ok(Store {
            db: Some(db),
            reads,
            writer,
            closed,
        })
    }

    /// Connect to PostgreSQL at `url` (the schema is applied, the partition claimed as
    /// `owner`) and start the writer thread.
    pub fn open_postgres(
        url: &str,
        owner: &str,
        hook: Arc<dyn PostCommit>,
        clock: Arc<dyn crate::domain::Clock>,
        config: WriterConfig,
        faults: Option<Arc<Faults>>,
    ) -> Result<Store, Error> {
        let (pg, reads) = postgres::PgWriter::connect(url, owner, faults)?;
        let closed = Arc::new(writer::Closed::default());
        let writer = writer::spawn(
            writer::Side::Postgres(Box::new(pg)),
            hook,
            clock,
            config,
            closed.clone(),
        );
        Ok(Store {
            db: None,
            reads: Arc::new(reads),
            writer,
            closed,
        })
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
    ) -> Result<(), Error> {
        self.commit_batch(actor, turns, Vec::new(), None)
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
    ) -> Result<TurnsAck, Error> {
        let answer = self.submit_batch(actor, turns, inline, expect).await?;
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
                done,
            })
            .await
            .map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    /// If the batch's snapshot (carried by its last turn with a non-empty state) is
    /// larger than [`large::LARGE`], commit it in slices now, one writer operation each,
    /// and empty it in the turn: the batch's own commit then only points at the slices.
    async fn stage_large_state(
        &self,
        turns: &mut [CommittedTurn],
        inline: &mut [InlineTurn],
    ) -> Result<Option<large::Staged>, Error> {
        use crate::domain::TurnResult;
        let carrier = inline
            .iter_mut()
            .enumerate()
            .rev()
            .map(|(j, it)| (large::Carrier::Inline(j), it.result.as_mut()))
            .chain(
                turns
                    .iter_mut()
                    .enumerate()
                    .rev()
                    .map(|(i, t)| (large::Carrier::Turn(i), Some(&mut t.result))),
            )
            .find(|(_, r)| matches!(r, Some(TurnResult::Done { state, .. }) if !state.is_empty()));
        let Some((carrier, Some(TurnResult::Done { state, .. }))) = carrier else {
            return Ok(None);
        };
        if state.len() <= large::LARGE {
            return Ok(None);
        }
        let bytes = std::mem::take(state);
        let id = rand::random::<u64>();
        let mut slices = 0u32;
        for (index, piece) in bytes.chunks(large::SLICE).enumerate() {
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
        Ok(Some(large::Staged {
            state: large::StateRef {
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
        if let Some(db) = &self.db
            && db.full.load(std::sync::atomic::Ordering::Relaxed)
        {
            // The last write failed for lack of space: is there room again? (redb may
            // still fit a small commit into free pages of its file; ask the file system.)
            let dir = db.path.parent().unwrap_or(Path::new("."));
            let scratch = dir.join(".space-probe");
            let room = (|| {
                use std::io::Write;
                let mut f = std::fs::File::create(&scratch)?;
                f.write_all(&vec![0u8; 4 << 20])?;
                f.sync_all()
            })();
            let _ = std::fs::remove_file(&scratch);
            if room.is_err() {
                return Err(Error::Full);
            }
            db.full.store(false, std::sync::atomic::Ordering::Relaxed);
        }
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
}

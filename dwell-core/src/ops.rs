//! The vocabulary of writes: what callers ask the store to do ([`EnqueueRequest`],
//! [`CommittedTurn`], [`Inline`] turns, [`AdminOp`]s, [`OutboxUpdate`]s) and what it
//! answers ([`EnqueueAck`], [`TurnsAck`], the [`Notice`]s of a commit).

use dwell_types::records::{ActorMeta, CallbackStatus, KeyRecord, TenantRecord};
use dwell_types::{ActorId, Envelope, RequestId, RequestStatus, TurnResult, UnixMs};

pub use dwell_storage::TimerKey;

/// Administrative writes. Each answers whether it changed anything.
#[derive(Debug, Clone)]
// Administrative writes are rare: their size does not matter, boxing would only add noise.
#[allow(clippy::large_enum_variant)]
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
    RemoveMeta {
        key: String,
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
    /// Move an actor to version `to_version` (`to_digest`) of its module at a turn
    /// boundary, with `state` (what the new version's `migrate` made of the old one):
    /// only if it is still on `from_digest` with mailbox head `head_seq`, i.e. no turn
    /// committed since that state was read. Version, digest and state change together;
    /// what the actor was is kept under `undo_key` (an [`UpgradeUndo`]).
    ///
    /// [`UpgradeUndo`]: dwell_types::upgrade::UpgradeUndo
    UpgradeActor {
        actor: ActorId,
        from_digest: String,
        head_seq: u64,
        to_version: u32,
        to_digest: String,
        state: Option<Vec<u8>>,
        undo_key: String,
    },
    /// Undo the move kept under `undo_key`: only if the actor is still on the version it
    /// moved to and no turn has changed its state since (then the undo record goes).
    RollbackActor {
        actor: ActorId,
        undo_key: String,
    },
}

/// Limits the writer enforces, and where actors run.
#[derive(Debug, Clone, Default)]
pub struct WriterConfig {
    /// Actors per tenant unless the tenant's quotas say otherwise.
    pub max_actors: u64,
    /// A cluster node's place: a message for an actor another node runs goes to the
    /// inbox, and only this node's overdue timers are fired. `None`: a single node, every
    /// actor is its own.
    pub placement: Option<std::sync::Arc<dwell_types::placement::Placement>>,
}

impl WriterConfig {
    /// Whether this node runs `actor` (always, on a single node).
    pub fn local(&self, actor: &ActorId) -> bool {
        self.placement.as_ref().is_none_or(|p| p.local(actor))
    }
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
    /// How long the guest ran, for the turn's history record.
    pub took_us: u64,
}

/// A message handed to its actor's runner in memory, before it was durable, and run
/// there: the writer commits its enqueue and its turn's outcome in one go — the message
/// never touches the mailbox. If the actor is not as the runner saw it (other mail
/// arrived first, a deploy or a delete intervened, the idempotency key was used), the
/// outcome is discarded and the message is only enqueued, like any other; its runner then
/// handles it again from the mailbox. Either way the caller hears after the commit.
#[derive(Debug, Clone)]
pub struct Inline {
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
    /// Every inline turn was committed as run (none fell back to the mailbox), and the
    /// mailbox turns ran on the version the actor is on.
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

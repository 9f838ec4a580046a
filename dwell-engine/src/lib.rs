//! The engine: the narrow handle the HTTP layer talks to, and the glue between the store,
//! the scheduler and the executor.
//! Long because it is the engine's whole public surface: every operation the HTTP layer
//! calls.
//!
//! Ingress calls [`Engine::call`] / [`Engine::send_event`]; those return once the message
//! is durable. The store's post-commit hook ([`Dispatch`]) then wakes the [`scheduler`] for
//! actors with new mail and settles request waiters ([`waiters`]). Compiled modules live in
//! the [`registry`]. What the node counts (turns, commits, timers, the outbox) is in
//! [`metrics`], served as Prometheus text by [`Engine::metrics_text`].

pub use dwell_executor as executor;
pub use dwell_types as domain;
pub mod store;

mod clock;
mod cluster;
mod lanes;
pub mod metrics;
mod outbound;
mod outbox;
mod registry;
mod runner;
mod scheduler;
mod secrets;
mod tenants;
#[cfg(test)]
mod tests;
mod timers;
pub mod trace;
mod upgrades;
pub mod visibility;
mod waiters;
pub mod warm;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::domain::{
    ActorId, Clock, Envelope, Limits, MessageKind, QuotaOverrides, Quotas, RequestId, RetryPolicy,
    TenantId, TraceParent, hash_key, new_key, validate_name,
};
use crate::executor::{Executor, ModuleError};
pub use crate::store::Storage;
use crate::store::{
    ActorView, EnqueueAck, EnqueueRequest, ModuleRecord, ModuleVersion, NewRequest, Notice,
    PostCommit, RequestRecord, Store,
};

pub use clock::{ManualClock, SystemClock};
pub use outbound::{OutboundConfig, check_allowed, new_secret, sign};
pub use registry::Registry;
pub use tenants::{AuthError, Caller, TenantInfo};
pub use upgrades::{Hotfix, UpgradeError};

/// Engine settings (the server's configuration, minus HTTP).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub retry: RetryPolicy,
    /// Actors with a runner at once (a runner is a task holding a batch; instances are
    /// taken from the warm pool only for the length of a turn).
    pub max_active_actors: usize,
    /// Messages of one actor handled back to back before one commit.
    pub batch_per_actor: usize,
    pub outbound: OutboundConfig,
    /// Callback signing secret (`whsec_…`); generated and kept in the data directory
    /// when not given.
    pub webhook_secret: Option<String>,
    /// The key (base64 of 32 bytes) that seals tenants' webhook secrets at rest;
    /// generated and kept in `<data>/secrets.key` when not given.
    pub secrets_key: Option<String>,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
    /// Of the turns an actor's history keeps, the states after this many of the most
    /// recent are kept too (0: none). Counts and age are per-tenant quotas.
    pub history_states: u64,
    /// How often expired idempotency keys are purged.
    pub purge_interval: Duration,
    /// Quotas of a tenant that has no overrides.
    pub quotas: Quotas,
    /// Let guests and callbacks reach loopback, private and link-local addresses (only
    /// for development and tests: link-local holds cloud metadata services).
    pub allow_private_net: bool,
    /// Use wasmtime's pooling allocator (instances, memories and stacks from
    /// pre-reserved slots).
    pub pooling: bool,
    /// Messages ingress may hold in memory before they are durable (in runners' inboxes
    /// and the writer's queue); past it, calls and events get 503 + `Retry-After`.
    pub ingress_messages: usize,
    /// The same bound in message bytes.
    pub ingress_bytes: usize,
    /// How many idle instances, and how much of their memory, the warm pool keeps.
    pub warm: warm::WarmLimits,
    /// Storage faults put in on purpose (engine tests; `None` in the server).
    pub storage_faults: Option<Arc<dwell_storage::faults::Faults>>,
    /// A cluster node's place (see [`cluster`]); `None`: a single node.
    pub placement: Option<Arc<dwell_types::placement::Placement>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("./data"),
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            max_active_actors: 8192,
            batch_per_actor: 64,
            outbound: OutboundConfig::default(),
            webhook_secret: None,
            secrets_key: None,
            idempotency_retention: Duration::from_secs(24 * 3600),
            history_states: 10,
            purge_interval: Duration::from_secs(10),
            quotas: Quotas::defaults(&Limits::default()),
            allow_private_net: false,
            pooling: true,
            warm: warm::WarmLimits::default(),
            ingress_messages: 65_536,
            ingress_bytes: 256 << 20,
            storage_faults: None,
            placement: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no module named {0:?}")]
    UnknownModule(String),
    #[error("the process of actor {0} is complete; it takes no more messages")]
    ActorCompleted(String),
    #[error(transparent)]
    InvalidModule(#[from] ModuleError),
    /// The disk holding the data is full: nothing was written.
    #[error("the disk holding the data is full")]
    StorageFull,
    /// The store is being reopened (redb after an I/O error), reconnected (PostgreSQL), or
    /// this node was fenced off its partition by another: nothing was written.
    #[error("storage is unavailable for now")]
    StorageUnavailable,
    /// The writer's queue or the ingress budget is full: nothing was accepted.
    #[error("the node is at capacity")]
    Overloaded,
    /// Storage failed otherwise (I/O, a record that does not decode, shut down).
    #[error(transparent)]
    Storage(store::Error),
    #[error("engine setup: {0}")]
    Setup(String),
    /// The data directory (keys, compiled modules) cannot be written.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyConflict,
    #[error("{0}")]
    Refused(String),
    #[error("quota exceeded: {0}")]
    Quota(String),
    #[error("a tenant named {0:?} already exists")]
    TenantExists(String),
    #[error("no tenant named {0:?}")]
    UnknownTenant(String),
    /// A cluster node was asked for an actor another node runs (at `owner`, when the
    /// partition has one now).
    #[error("{}", match owner { Some(o) => format!("this actor runs on another node ({o})"), None => "this actor's partition is moving between nodes; retry shortly".to_owned() })]
    Misdirected { owner: Option<String> },
}

/// Storage errors keep their kind: a full disk, a file being reopened and a full queue
/// are what a caller can act on (so is a node fenced off its partition by another: it
/// is unavailable here, and the caller may retry elsewhere); everything else is internal.
impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Full => Error::StorageFull,
            store::Error::Unavailable => Error::StorageUnavailable,
            store::Error::Backend(dwell_storage::Error::Fenced) => Error::StorageUnavailable,
            store::Error::Overloaded => Error::Overloaded,
            e => Error::Storage(e),
        }
    }
}

pub(crate) struct Inner {
    pub store: Store,
    pub executor: Executor,
    pub registry: Arc<Registry>,
    pub waiters: waiters::Waiters,
    pub scheduler: scheduler::Scheduler,
    pub clock: Arc<dyn Clock>,
    pub config: EngineConfig,
    pub rt: tokio::runtime::Handle,
    pub timer_wake: tokio::sync::Notify,
    pub outbox_wake: tokio::sync::Notify,
    pub webhook_secret: String,
    /// Seals tenants' webhook secrets before they are stored.
    sealer: secrets::Sealer,
    pub tenants: Arc<tenants::Tenants>,
    pub warm: warm::WarmCache,
    pub in_flight: Arc<InFlight>,
    pub(crate) schedule: timers::Schedule,
    /// What the node counts (see [`metrics`]).
    pub(crate) metrics: metrics::Metrics,
    /// The outbound HTTP client (one connection pool for calls and callbacks).
    pub http: outbound::HttpClient,
    /// Deleted tenants this node is purging now (one task each).
    purging: std::sync::Mutex<std::collections::HashSet<String>>,
    /// When a cluster node last read the shared configuration for a key it did not know.
    config_read_ms: std::sync::atomic::AtomicU64,
}

/// What ingress holds in memory before it is durable: counted on admission, released
/// when the caller has its answer (or gave up).
pub(crate) struct InFlight {
    max_messages: usize,
    max_bytes: usize,
    messages: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicUsize,
}

/// One admitted message; dropping it releases its share.
pub(crate) struct Admitted {
    pool: Arc<InFlight>,
    bytes: usize,
}

impl InFlight {
    fn new(max_messages: usize, max_bytes: usize) -> Self {
        InFlight {
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
            messages: Default::default(),
            bytes: Default::default(),
        }
    }

    /// Admit a message of `bytes`, or `None` when the budget is spent.
    fn admit(self: &Arc<Self>, bytes: usize) -> Option<Admitted> {
        use std::sync::atomic::Ordering::AcqRel;
        let n = self.messages.fetch_add(1, AcqRel);
        let b = self.bytes.fetch_add(bytes, AcqRel);
        let admitted = Admitted {
            pool: self.clone(),
            bytes,
        };
        // Over budget: the guard gives both shares back as it drops.
        (n < self.max_messages && b + bytes <= self.max_bytes).then_some(admitted)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::AcqRel;
        self.pool.messages.fetch_sub(1, AcqRel);
        self.pool.bytes.fetch_sub(self.bytes, AcqRel);
    }
}

/// What the executor may ask while recording effects: modules of the tenant, and whether
/// a destination is reachable for it.
struct Directory {
    registry: Arc<Registry>,
    tenants: Arc<tenants::Tenants>,
    clock: Arc<dyn Clock>,
    platform_allow: Vec<String>,
    allow_private: bool,
}

impl crate::executor::ModuleDirectory for Directory {
    fn module_exists(&self, tenant: &TenantId, module: &str) -> bool {
        self.registry.latest(tenant, module).is_some()
    }

    fn check_outbound(&self, tenant: &TenantId, url: &str) -> Result<(), String> {
        let tenant_allow = self
            .tenants
            .get(tenant)
            .map(|t| t.record.allow_http.clone())
            .unwrap_or_default();
        outbound::check_destination(
            &self.platform_allow,
            &tenant_allow,
            url,
            self.allow_private,
            false,
        )
    }

    fn admit_log(&self, tenant: &TenantId, bytes: usize) -> bool {
        self.tenants.admit_log(tenant, bytes, self.clock.now_ms())
    }
}

/// Handle to the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// The store's post-commit hook, pointing back at the engine once it exists.
struct Dispatch {
    engine: OnceLock<Weak<Inner>>,
}

impl PostCommit for Dispatch {
    fn committed(&self, notices: Vec<Notice>) {
        let Some(inner) = self.engine.get().and_then(Weak::upgrade) else {
            return;
        };
        for n in notices {
            match n {
                Notice::Mail(actor) => runner::wake(&inner, actor),
                Notice::Settled(id, status) => inner.waiters.settle(id, status),
                Notice::TimerSet { key, payload } => {
                    if inner.schedule.set(key, payload) {
                        inner.timer_wake.notify_one();
                    }
                }
                Notice::TimerGone(key) => inner.schedule.gone(&key),
                Notice::Outbox => inner.outbox_wake.notify_one(),
            }
        }
    }
}

/// The result of a deploy.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub version: ModuleVersion,
    /// False when the same bytes were already the latest version.
    pub created: bool,
}

impl Engine {
    /// Open the store, load the modules, and pick up actors that still have mail.
    /// Must be called within a tokio runtime; turns run on it.
    pub fn start(config: EngineConfig, storage: Storage) -> Result<Engine, Error> {
        Engine::start_with_clock(config, storage, Arc::new(SystemClock))
    }

    /// [`Engine::start`] on another clock (tests drive a [`ManualClock`]).
    pub fn start_with_clock(
        config: EngineConfig,
        storage: Storage,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, Error> {
        let dispatch = Arc::new(Dispatch {
            engine: OnceLock::new(),
        });
        let writer_config = store::WriterConfig {
            max_actors: config.quotas.max_actors,
            placement: config.placement.clone(),
        };
        // The data directory holds the keys and the compiled modules (and redb's file):
        // the owner's only.
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.data_dir)
                .and_then(|()| {
                    std::fs::set_permissions(
                        &config.data_dir,
                        std::fs::Permissions::from_mode(0o700),
                    )
                })?;
        }
        let store = storage.start(
            dispatch.clone(),
            clock.clone(),
            writer_config,
            config.storage_faults.clone(),
        );
        let webhook_secret = match &config.webhook_secret {
            Some(s) => s.clone(),
            None => load_or_create_secret(&config.data_dir)?,
        };
        outbound::sign(&webhook_secret, "check", 0, b"")
            .map_err(|e| Error::Setup(format!("webhook secret: {e}")))?;
        let registry = Arc::new(Registry::new(config.data_dir.join("compiled")));
        let tenants = Arc::new(tenants::Tenants::new(
            config.quotas.clone(),
            config.limits.clone(),
        ));
        let sealer = secrets::Sealer::load(config.secrets_key.as_deref(), &config.data_dir)
            .map_err(Error::Setup)?;
        let now = clock.now_ms();
        for (name, mut rec) in store.tenants()? {
            rec.webhook_secret = sealer
                .open(&name, &rec.webhook_secret)
                .map_err(Error::Setup)?;
            tenants.put(&name, rec, now);
        }
        for (id, rec) in store.keys()? {
            tenants.put_key(&id, &rec);
        }
        let directory = Arc::new(Directory {
            registry: registry.clone(),
            tenants: tenants.clone(),
            clock: clock.clone(),
            platform_allow: config.outbound.allow.clone(),
            allow_private: config.allow_private_net,
        });
        let warm_limits = config.warm;
        // Instances alive at once: one per turn executing (one per CPU slot), the idle
        // ones in the warm pool, and a margin for those being torn down.
        let cpu_slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool_slots = if config.pooling {
            (cpu_slots + config.warm.instances + 64) as u32
        } else {
            0
        };
        let executor =
            Executor::new(config.limits.clone(), directory, pool_slots).map_err(Error::Setup)?;
        registry.load(&store)?;
        let in_flight = Arc::new(InFlight::new(config.ingress_messages, config.ingress_bytes));
        let http = outbound::HttpClient::new(&config.outbound)
            .map_err(|e| Error::Setup(format!("outbound TLS: {e}")))?;
        let metrics = metrics::Metrics::new(store.writer_metrics());
        let inner = Arc::new(Inner {
            store,
            executor,
            registry,
            waiters: waiters::Waiters::default(),
            scheduler: scheduler::Scheduler::new(config.max_active_actors),
            clock,
            config,
            rt: tokio::runtime::Handle::current(),
            timer_wake: tokio::sync::Notify::new(),
            outbox_wake: tokio::sync::Notify::new(),
            webhook_secret,
            sealer,
            tenants,
            warm: warm::WarmCache::new(warm_limits),
            in_flight,
            schedule: timers::Schedule::default(),
            http,
            metrics,
            purging: Default::default(),
            config_read_ms: Default::default(),
        });
        let _ = dispatch.engine.set(Arc::downgrade(&inner));
        inner.rt.spawn(timers::run(inner.clone()));
        inner.rt.spawn(timers::purge(inner.clone()));
        inner.rt.spawn(outbox::run(inner.clone()));
        {
            // Idle instances past their time give their memory back, even on a quiet node.
            let (rt, inner) = (inner.rt.clone(), Arc::downgrade(&inner));
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(15));
                loop {
                    tick.tick().await;
                    match inner.upgrade() {
                        Some(inner) => inner.warm.expire(),
                        None => return,
                    }
                }
            });
        }
        for id in inner.store.purges()? {
            tracing::info!(tenant = %id, "resuming the purge of a deleted tenant");
            start_purge(&inner, id);
        }
        let mut ready = inner.store.ready_actors()?;
        if let Some(p) = &inner.config.placement {
            ready.retain(|a| p.local(a));
        }
        if !ready.is_empty() {
            tracing::info!(actors = ready.len(), "resuming actors with pending mail");
        }
        for actor in ready {
            runner::wake(&inner, actor);
        }
        if let Some(p) = &inner.config.placement {
            cluster::start(&inner, p.clone());
        }
        let engine = Engine { inner };
        let resume = engine.clone();
        engine
            .inner
            .rt
            .spawn(async move { resume.resume_upgrades().await });
        Ok(engine)
    }

    /// This node's place in its cluster (`None`: a single node).
    pub fn placement(&self) -> Option<&Arc<dwell_types::placement::Placement>> {
        self.inner.config.placement.as_ref()
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }

    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Validate, compile and store a module version.
    pub async fn deploy(
        &self,
        tenant: &TenantId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<Deployed, Error> {
        let quotas = self.quotas(tenant)?;
        if bytes.len() as u64 > quotas.max_module_bytes {
            return Err(Error::Quota(format!(
                "the module is {} bytes; this tenant's limit is {} bytes",
                bytes.len(),
                quotas.max_module_bytes
            )));
        }
        if self.inner.registry.latest(tenant, name).is_none()
            && self.inner.registry.count(tenant) as u64 >= quotas.max_modules
        {
            return Err(Error::Quota(format!(
                "this tenant may have at most {} modules",
                quotas.max_modules
            )));
        }
        let digest = crate::domain::Digest::of(&bytes).0;
        let executor = self.inner.executor.clone();
        let compile_bytes = bytes.clone();
        let compiled = tokio::task::spawn_blocking(move || executor.compile(&compile_bytes))
            .await
            .map_err(|e| Error::Setup(e.to_string()))??;
        let (version, created) = self
            .inner
            .store
            .put_module(tenant.clone(), name.to_owned(), bytes, digest.clone())
            .await?;
        self.inner
            .registry
            .install(tenant, name, version.clone(), compiled);
        Ok(Deployed { version, created })
    }

    pub fn modules(&self, tenant: &TenantId) -> Result<Vec<(String, ModuleRecord)>, Error> {
        Ok(self.inner.store.modules(tenant)?)
    }

    pub fn module_exists(&self, tenant: &TenantId, name: &str) -> bool {
        self.inner.registry.latest(tenant, name).is_some()
    }

    fn check_target(&self, actor: &ActorId) -> Result<(), Error> {
        if let Some(p) = &self.inner.config.placement
            && !p.local(actor)
        {
            return Err(Error::Misdirected {
                owner: p.owner(actor),
            });
        }
        if self.module_exists(&actor.tenant, &actor.module) {
            Ok(())
        } else {
            Err(Error::UnknownModule(actor.module.clone()))
        }
    }

    /// The `Idempotency-Key` to remember with a message, with a fingerprint of what the
    /// message carries: its kind, its actor and its body.
    fn idempotency(&self, key: Option<String>, req: &EnqueueRequest) -> Option<store::Idempotency> {
        use sha2::Digest as _;
        let key = key?;
        let kind = match req.envelope.kind {
            MessageKind::Request { .. } => "request",
            _ => "event",
        };
        let mut h = sha2::Sha256::new();
        for part in [kind.as_bytes(), req.actor.storage_key().as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(&req.envelope.body);
        Some(store::Idempotency {
            key,
            expires_ms: self.now_ms() + self.inner.config.idempotency_retention.as_millis() as u64,
            fingerprint: h.finalize().into(),
        })
    }

    fn refused(actor: &ActorId, ack: EnqueueAck) -> Error {
        match ack {
            EnqueueAck::ActorCompleted => Error::ActorCompleted(actor.to_string()),
            EnqueueAck::UnknownModule => Error::UnknownModule(actor.module.clone()),
            EnqueueAck::KeyConflict => Error::IdempotencyConflict,
            EnqueueAck::ActorQuota(max) => {
                Error::Quota(format!("this tenant may have at most {max} actors"))
            }
            EnqueueAck::Accepted { .. } | EnqueueAck::Duplicate { .. } => {
                Error::Setup(format!("unexpected enqueue answer {ack:?}"))
            }
        }
    }

    /// Make a message durable. `inline`: hand it to its actor's runner, which commits it
    /// together with its turn (one commit instead of two, so a quick call answers
    /// sooner); else, or when that runner's inbox is full, enqueue it on its own (the
    /// caller hears before the turn runs). Either way this returns after the commit that
    /// holds the message.
    async fn ingest(&self, req: EnqueueRequest, inline: bool) -> Result<EnqueueAck, Error> {
        let ingested = self.ingest_counted(req, inline).await;
        if let Err(Error::Overloaded | Error::StorageUnavailable) = &ingested {
            self.inner.metrics.rejected_503.inc();
        }
        ingested
    }

    /// [`Engine::ingest`], before its refusals are counted.
    async fn ingest_counted(&self, req: EnqueueRequest, inline: bool) -> Result<EnqueueAck, Error> {
        // Bounded memory under overload: past the in-flight budget, refuse (503) rather
        // than queue.
        let Some(_admitted) = self.inner.in_flight.admit(req.envelope.body.len()) else {
            return Err(store::Error::Overloaded.into());
        };
        let req = if inline {
            if self.inner.store.overloaded() {
                return Err(store::Error::Overloaded.into());
            }
            let (done, answer) = tokio::sync::oneshot::channel();
            let inbound = scheduler::Inbound {
                req,
                timer: None,
                done,
            };
            match runner::offer(&self.inner, inbound) {
                Ok(()) => return Ok(answer.await.map_err(|_| store::Error::Closed)??),
                Err(back) => back.req,
            }
        } else {
            req
        };
        Ok(self.inner.store.enqueue(req).await?)
    }

    /// Durably enqueue a request to an actor. Returns the request id to wait for: `id`,
    /// or with a repeated `Idempotency-Key`, the first request's id (and `true`).
    /// Register a watch on `id` before calling, so no reply can be missed. `inline`:
    /// the caller will wait for the reply, so the message may be committed together with
    /// its turn (see [`Engine::ingest`]). `trace`: the trace context the message
    /// carries into its turn (and on to what the turn causes, and the callback).
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        actor: &ActorId,
        id: RequestId,
        body: Vec<u8>,
        callback_url: Option<String>,
        idempotency_key: Option<String>,
        inline: bool,
        trace: Option<TraceParent>,
    ) -> Result<(RequestId, bool), Error> {
        self.check_target(actor)?;
        if let Some(url) = &callback_url {
            self.check_callback(&actor.tenant, url)
                .map_err(|e| Error::Refused(format!("Callback-Url refused: {e}")))?;
        }
        let mut req = EnqueueRequest {
            actor: actor.clone(),
            envelope: Envelope {
                kind: MessageKind::Request { request: id },
                body,
                enqueued_ms: self.now_ms(),
                trace,
            },
            request: Some(NewRequest { id, callback_url }),
            idempotency: None,
        };
        req.idempotency = self.idempotency(idempotency_key, &req);
        match self.ingest(req, inline).await? {
            EnqueueAck::Accepted { .. } => Ok((id, false)),
            EnqueueAck::Duplicate {
                request: Some(first),
                ..
            } => Ok((first, true)),
            EnqueueAck::Duplicate { request: None, .. } => Err(Error::IdempotencyConflict),
            other => Err(Self::refused(actor, other)),
        }
    }

    /// Durably enqueue a one-way event; returns its mailbox sequence number and whether
    /// it was a repeat of an earlier `Idempotency-Key` (then nothing new was enqueued).
    pub async fn send_event(
        &self,
        actor: &ActorId,
        body: Vec<u8>,
        idempotency_key: Option<String>,
        trace: Option<TraceParent>,
    ) -> Result<(u64, bool), Error> {
        self.check_target(actor)?;
        let mut req = EnqueueRequest {
            actor: actor.clone(),
            envelope: Envelope {
                kind: MessageKind::Event,
                body,
                enqueued_ms: self.now_ms(),
                trace,
            },
            request: None,
            idempotency: None,
        };
        req.idempotency = self.idempotency(idempotency_key, &req);
        match self.ingest(req, true).await? {
            EnqueueAck::Accepted { seq } => Ok((seq, false)),
            EnqueueAck::Duplicate { request: None, seq } => Ok((seq, true)),
            EnqueueAck::Duplicate {
                request: Some(_), ..
            } => Err(Error::IdempotencyConflict),
            other => Err(Self::refused(actor, other)),
        }
    }

    /// Start waiting for a request's outcome *before* it can possibly settle.
    pub fn watch(&self, id: RequestId) -> waiters::Watch {
        self.inner.waiters.watch(id)
    }

    /// Wait up to `wait` for a request to settle; returns its record (possibly still
    /// pending). `None` if the request does not exist or belongs to another tenant.
    pub async fn wait(
        &self,
        tenant: &TenantId,
        id: RequestId,
        watch: Option<waiters::Watch>,
        wait: Duration,
    ) -> Result<Option<RequestRecord>, Error> {
        let watch = watch.unwrap_or_else(|| self.watch(id));
        let mut first: Option<Result<Option<RequestRecord>, Error>> = None;
        watch
            .wait_until(wait, || {
                let rec = self.request(tenant, id);
                let settled = match &rec {
                    Ok(Some(r)) => !r.status.is_pending() || wait.is_zero(),
                    _ => true,
                };
                first = Some(rec);
                settled
            })
            .await;
        match first {
            Some(Ok(Some(r))) if r.status.is_pending() && !wait.is_zero() => {
                self.request(tenant, id)
            }
            Some(rec) => rec,
            None => self.request(tenant, id),
        }
    }

    /// A request of `tenant`, or `None` (also for another tenant's request).
    pub fn request(
        &self,
        tenant: &TenantId,
        id: RequestId,
    ) -> Result<Option<RequestRecord>, Error> {
        let rec = self.inner.store.request(id)?;
        Ok(rec.filter(|r| &r.actor.tenant == tenant))
    }

    pub fn inspect(&self, actor: &ActorId) -> Result<Option<ActorView>, Error> {
        Ok(self.inner.store.actor_view(actor, 100)?)
    }

    /// An actor's pending timers: `(name, due)`.
    pub fn timers_of(&self, actor: &ActorId) -> Result<Vec<(String, u64)>, Error> {
        Ok(self.inner.store.timers_of(actor)?)
    }

    /// An actor's outstanding outbound HTTP calls.
    pub fn http_calls_of(&self, actor: &ActorId) -> Result<Vec<store::OutboxEntry>, Error> {
        Ok(self.inner.store.http_pending_of(actor)?)
    }

    fn check_callback(&self, tenant: &TenantId, url: &str) -> Result<(), String> {
        let tenant_allow = self
            .inner
            .tenants
            .get(tenant)
            .map(|t| t.record.allow_http.clone())
            .unwrap_or_default();
        outbound::check_destination(
            &self.inner.config.outbound.allow,
            &tenant_allow,
            url,
            self.inner.config.allow_private_net,
            false,
        )
    }

    /// The quotas in force for `tenant`.
    pub fn quotas(&self, tenant: &TenantId) -> Result<Quotas, Error> {
        self.inner
            .tenants
            .get(tenant)
            .map(|t| t.quotas.clone())
            .ok_or_else(|| Error::UnknownTenant(tenant.0.clone()))
    }

    /// Who holds this bearer token.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Caller, AuthError> {
        let got = self.inner.tenants.authenticate(bearer);
        // A cluster node: a key issued through another node since this one last read the
        // shared configuration. Read it now — at most every 250 ms, so unknown keys
        // cannot make every request a read of the store.
        if matches!(got, Err(AuthError::Invalid)) && self.inner.config.placement.is_some() {
            use std::sync::atomic::Ordering;
            let now = self.now_ms();
            let last = self.inner.config_read_ms.load(Ordering::Acquire);
            if now.saturating_sub(last) >= 250
                && self
                    .inner
                    .config_read_ms
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                && cluster::sync_config(&self.inner).is_ok()
            {
                return self.inner.tenants.authenticate(bearer);
            }
        }
        got
    }

    /// Count one request against the tenant's rate; `Err(wait)` when over it.
    pub fn admit(&self, tenant: &TenantId) -> Result<(), Duration> {
        let admitted = self.inner.tenants.admit(tenant, self.now_ms());
        if admitted.is_err() {
            self.inner.metrics.rejected_429.inc();
        }
        admitted
    }

    /// The node's metrics in the Prometheus text format (see [`metrics`]), and its
    /// `Content-Type`. Gauges of what is cheaper to read than to track are read now.
    pub fn metrics_text(&self) -> (String, &'static str) {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = &self.inner;
        let m = &inner.metrics;
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        m.in_flight
            .set(gauge(inner.in_flight.messages.load(Relaxed)));
        let (actors, inbox) = inner.scheduler.load();
        m.active_actors.set(gauge(actors));
        m.inbox.set(gauge(inbox));
        m.timers_loaded.set(gauge(inner.schedule.loaded()));
        // Durable totals, read from the store now (one short read transaction).
        match inner.store.backlog() {
            Ok(b) => {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                m.mailbox.set(count(b.mailbox));
                m.timers_pending.set(count(b.timers));
                m.outbox_pending.set(count(b.outbox));
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the backlog"),
        }
        m.instances_in_use
            .set(gauge(inner.executor.instances_in_use()));
        m.instances_idle.set(gauge(inner.warm.idle()));
        if let Some(p) = &inner.config.placement {
            let now = p.snapshot();
            m.partitions_held.set(gauge(now.held.len()));
            let serving = now.serving && now.until.is_none_or(|t| std::time::Instant::now() < t);
            m.serving.set(i64::from(serving));
            m.fenced_commits.set(p.fenced());
        }
        (m.encode(), metrics::CONTENT_TYPE)
    }

    /// First start on an empty data directory: create the `default` tenant and its key,
    /// and — unless `admin_key` is given — an admin key. Later starts load the admin
    /// key's hash (or use `admin_key`). Returns the keys created now (shown once).
    pub async fn bootstrap(&self, admin_key: Option<&str>) -> Result<Option<FirstStart>, Error> {
        let store = &self.inner.store;
        let dir = &self.inner.config.data_dir;
        // Secrets stored in plain text before sealing existed are sealed now.
        for (name, mut record) in store.tenants()? {
            if !secrets::Sealer::is_sealed(&record.webhook_secret) {
                record.webhook_secret = self.inner.sealer.seal(&name, &record.webhook_secret);
                let op = store::AdminOp::PutTenant {
                    name,
                    record,
                    create_only: false,
                };
                store.admin(op).await?;
            }
        }
        let mut first = None;
        if store.meta_value("bootstrapped")?.is_none() {
            // The default tenant signs callbacks with the server's secret (from
            // `--webhook-secret`, or generated into `<data>/webhook-secret`).
            let tenant = self
                .create_tenant_with("default", Some(self.inner.webhook_secret.clone()))
                .await;
            let created = match tenant {
                Ok(_) | Err(Error::TenantExists(_)) => {
                    let (_, key) = self.issue_key("default").await?;
                    write_private(&dir.join("default-tenant.key"), key.as_bytes())
                        .map_err(Error::Io)?;
                    key
                }
                Err(e) => return Err(e),
            };
            let admin = match admin_key {
                Some(_) => None,
                None => {
                    let (_, key) = new_key("dw");
                    let key = key.replacen("dw_", "dwadmin_", 1);
                    store
                        .admin(store::AdminOp::PutMeta {
                            key: "admin_key_hash".into(),
                            value: hash_key(&key).to_vec(),
                        })
                        .await?;
                    write_private(&dir.join("admin.key"), key.as_bytes()).map_err(Error::Io)?;
                    Some(key)
                }
            };
            store
                .admin(store::AdminOp::PutMeta {
                    key: "bootstrapped".into(),
                    value: vec![1],
                })
                .await?;
            first = Some(FirstStart {
                tenant_key: created,
                admin_key: admin,
            });
        }
        let admin_hash = match admin_key {
            Some(k) => Some(hash_key(k)),
            None => store
                .meta_value("admin_key_hash")?
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok()),
        };
        if let Some(h) = admin_hash {
            self.inner.tenants.set_admin_hash(h);
        }
        Ok(first)
    }

    /// Create a tenant; returns it and its callback signing secret (shown once).
    pub async fn create_tenant(&self, name: &str) -> Result<(Arc<TenantInfo>, String), Error> {
        self.create_tenant_with(name, None).await
    }

    /// Create a tenant. Its identity is the name plus a random suffix, so that nothing
    /// of an earlier tenant of the same name (deleted, maybe still being purged) can
    /// ever be reached through it; the default tenant made at first start keeps its
    /// bare name (`secret` given).
    async fn create_tenant_with(
        &self,
        name: &str,
        secret: Option<String>,
    ) -> Result<(Arc<TenantInfo>, String), Error> {
        validate_name("tenant name", name).map_err(Error::Refused)?;
        let id = secret
            .is_none()
            .then(|| format!("{name}~{:08x}", rand::random::<u32>()));
        let record = store::TenantRecord {
            created_ms: self.now_ms(),
            quotas: QuotaOverrides::default(),
            webhook_secret: secret.unwrap_or_else(outbound::new_secret),
            allow_http: Vec::new(),
            id,
        };
        let created = self
            .inner
            .store
            .admin(store::AdminOp::PutTenant {
                name: name.to_owned(),
                record: self.sealed(name, &record),
                create_only: true,
            })
            .await?;
        if !created {
            return Err(Error::TenantExists(name.to_owned()));
        }
        let secret = record.webhook_secret.clone();
        self.inner.tenants.put(name, record, self.now_ms());
        let info = self.tenant(name)?;
        Ok((info, secret))
    }

    /// `record` as stored: its webhook secret sealed.
    fn sealed(&self, name: &str, record: &store::TenantRecord) -> store::TenantRecord {
        store::TenantRecord {
            webhook_secret: self.inner.sealer.seal(name, &record.webhook_secret),
            ..record.clone()
        }
    }

    /// The live tenant named `name`.
    pub fn tenant(&self, name: &str) -> Result<Arc<TenantInfo>, Error> {
        if let Some(t) = self.inner.tenants.by_name(name) {
            return Ok(t);
        }
        // A cluster node: the tenant may have been made through another node since this
        // one last read the shared configuration.
        if self.inner.config.placement.is_some() {
            cluster::sync_config(&self.inner)?;
            if let Some(t) = self.inner.tenants.by_name(name) {
                return Ok(t);
            }
        }
        Err(Error::UnknownTenant(name.to_owned()))
    }

    pub fn tenants(&self) -> Vec<Arc<TenantInfo>> {
        self.inner.tenants.all()
    }

    pub fn key_ids(&self, tenant: &TenantId) -> Vec<String> {
        self.inner.tenants.key_ids(tenant)
    }

    pub fn actor_count(&self, tenant: &TenantId) -> Result<u64, Error> {
        Ok(self.inner.store.tenant_actor_count(&tenant.0)?)
    }

    /// Change a tenant's quotas and allowlist, or rotate its callback secret (the new
    /// secret is returned, once).
    pub async fn update_tenant(
        &self,
        name: &str,
        quotas: Option<QuotaOverrides>,
        allow_http: Option<Vec<String>>,
        rotate_secret: bool,
    ) -> Result<(Arc<TenantInfo>, Option<String>), Error> {
        let mut record = self.tenant(name)?.record.clone();
        if let Some(q) = quotas {
            record.quotas = tenants::Tenants::merge(&record.quotas, &q);
        }
        if let Some(allow) = allow_http {
            for rule in &allow {
                if rule.trim().is_empty() || rule.contains('/') || rule.len() > 253 {
                    return Err(Error::Refused(format!(
                        "{rule:?} is not a host or host:port"
                    )));
                }
            }
            record.allow_http = allow;
        }
        let secret = rotate_secret.then(outbound::new_secret);
        if let Some(s) = &secret {
            record.webhook_secret = s.clone();
        }
        self.inner
            .store
            .admin(store::AdminOp::PutTenant {
                name: name.to_owned(),
                record: self.sealed(name, &record),
                create_only: false,
            })
            .await?;
        self.inner.tenants.put(name, record, self.now_ms());
        Ok((self.tenant(name)?, secret))
    }

    /// Delete a tenant: its keys and modules at once (its keys stop working, its actors
    /// stop running, its timers and deliveries stop), everything else — actors, states,
    /// mailboxes, timers, requests, idempotency keys, outbox entries — purged in the
    /// background. A tenant created again under the name starts empty.
    pub async fn delete_tenant(&self, name: &str) -> Result<(), Error> {
        let tenant = self.tenant(name)?.id.clone();
        self.inner
            .store
            .admin(store::AdminOp::DeleteTenant {
                name: name.to_owned(),
            })
            .await?;
        self.inner.tenants.remove(name);
        self.inner.registry.forget_tenant(&tenant);
        self.inner.warm.forget_tenant(&tenant);
        self.inner.scheduler.forget_tenant(&tenant);
        start_purge(&self.inner, tenant.0);
        Ok(())
    }

    /// Issue an API key for a tenant: `(id, key)`. The key is shown once and stored only
    /// as its hash.
    pub async fn issue_key(&self, tenant: &str) -> Result<(String, String), Error> {
        let tenant = self.tenant(tenant)?.id.clone();
        let (id, key) = new_key("dw");
        let record = store::KeyRecord {
            tenant: tenant.0,
            hash: hash_key(&key).to_vec(),
            created_ms: self.now_ms(),
        };
        self.inner
            .store
            .admin(store::AdminOp::PutKey {
                id: id.clone(),
                record: record.clone(),
            })
            .await?;
        self.inner.tenants.put_key(&id, &record);
        Ok((id, key))
    }

    /// Revoke a key of `tenant`; effective at once.
    pub async fn revoke_key(&self, tenant: &str, id: &str) -> Result<bool, Error> {
        let tenant = self.tenant(tenant)?.id.clone();
        let removed = self
            .inner
            .store
            .admin(store::AdminOp::DeleteKey {
                tenant: tenant.0,
                id: id.to_owned(),
            })
            .await?;
        if removed {
            self.inner.tenants.remove_key(id);
        }
        Ok(removed)
    }

    /// Delete an actor and everything it holds; its waiting requests fail.
    pub async fn delete_actor(&self, actor: &ActorId) -> Result<bool, Error> {
        Ok(self
            .inner
            .store
            .admin(store::AdminOp::DeleteActor {
                actor: actor.clone(),
            })
            .await?)
    }

    /// Put a dead letter back into its actor's mailbox. Returns the new request id if
    /// the message was a request, or `None` if it was not (or nothing was retried).
    pub async fn retry_dead_letter(
        &self,
        actor: &ActorId,
        seq: u64,
    ) -> Result<Option<Option<RequestId>>, Error> {
        let new_request = RequestId::random();
        let was_request = self
            .inner
            .store
            .actor_view(actor, usize::MAX)?
            .and_then(|v| v.dead_letters.into_iter().find(|(s, _)| *s == seq))
            .map(|(_, d)| matches!(d.envelope.kind, MessageKind::Request { .. }));
        let Some(was_request) = was_request else {
            return Ok(None);
        };
        let retried = self
            .inner
            .store
            .admin(store::AdminOp::RetryDeadLetter {
                actor: actor.clone(),
                seq,
                new_request,
            })
            .await?;
        if !retried {
            return Ok(None);
        }
        Ok(Some(was_request.then_some(new_request)))
    }

    /// Delete a module name; actors pinned to its versions keep running them.
    pub async fn delete_module(&self, tenant: &TenantId, name: &str) -> Result<bool, Error> {
        let removed = self
            .inner
            .store
            .admin(store::AdminOp::DeleteModule {
                tenant: tenant.0.clone(),
                name: name.to_owned(),
            })
            .await?;
        self.inner.registry.forget(tenant, name);
        Ok(removed)
    }

    /// Wait for a clean shutdown: drop every engine handle and the runtime first, then
    /// wait on this until the store is closed.
    pub fn closed(&self) -> Arc<store::Closed> {
        self.inner.store.closed()
    }

    /// Writer counters (for the benchmark).
    /// Ready for traffic: the store reads and the writer commits within `within`.
    pub async fn ready(&self, within: Duration) -> Result<(), String> {
        match tokio::time::timeout(within, self.inner.store.probe()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the store does not take writes: {e}")),
            Err(_) => Err(format!(
                "the store's writer did not commit within {} ms",
                within.as_millis()
            )),
        }
    }

    pub async fn writer_stats(&self) -> Result<store::WriterStats, Error> {
        Ok(self.inner.store.writer_stats().await?)
    }
}

/// Keys created at first start, to show once.
#[derive(Debug, Clone)]
pub struct FirstStart {
    pub tenant_key: String,
    /// `None` when the admin key was given (it is never printed then).
    pub admin_key: Option<String>,
}

/// The callback signing secret kept in `<data>/webhook-secret` (mode 0600), created on
/// first start.
fn load_or_create_secret(dir: &std::path::Path) -> Result<String, Error> {
    let path = dir.join("webhook-secret");
    // An empty file is what a kill mid-write left before writes were atomic.
    if let Ok(s) = std::fs::read_to_string(&path)
        && !s.trim().is_empty()
    {
        return Ok(s.trim().to_owned());
    }
    let secret = outbound::new_secret();
    write_private(&path, secret.as_bytes()).map_err(Error::Io)?;
    Ok(secret)
}

/// Write a file readable by its owner only.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Written whole or not at all: a kill between create and write must not leave an
    // empty key file that the next start refuses (or, worse, uses).
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Purge the deleted tenant `tenant` (see [`purge`]) unless this node is at it already.
pub(crate) fn start_purge(inner: &Arc<Inner>, tenant: String) {
    let new = inner
        .purging
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(tenant.clone());
    if new {
        inner.rt.spawn(purge(inner.clone(), tenant));
    }
}

/// Purge a deleted tenant's data in batches, each its own short write, so the writer
/// keeps serving everyone else in between. On a cluster node, every node purges the
/// actors of the partitions it holds, and any node the rest; the job ends when nothing
/// of the tenant is left on any node.
async fn purge(inner: Arc<Inner>, tenant: String) {
    /// Off the list of purges under way however the task ends.
    struct Done<'a>(&'a Inner, &'a str);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0
                .purging
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(self.1);
        }
    }
    let _done = Done(&inner, &tenant);
    let cluster = inner.config.placement.is_some();
    // Upgrade runs and undo records first (a purge resumed after a restart does it again).
    let engine = Engine {
        inner: inner.clone(),
    };
    while let Err(e) = engine.forget_upgrades(&tenant).await {
        if matches!(e, Error::Storage(store::Error::Closed)) {
            return;
        }
        tracing::warn!(%tenant, error = %e, "forgetting a deleted tenant's upgrades; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    loop {
        let op = store::AdminOp::PurgeTenant {
            id: tenant.clone(),
            max: 2_000,
        };
        match inner.store.admin(op).await {
            // What is left may be other nodes' to purge: look again shortly.
            Ok(true) if cluster => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(true) => tokio::task::yield_now().await,
            Ok(false) => {
                tracing::info!(%tenant, "deleted tenant purged");
                return;
            }
            Err(store::Error::Closed) => return,
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "purging a deleted tenant; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

//! The engine: the narrow handle the HTTP layer talks to, and the glue between the store,
//! the scheduler and the executor.
//!
//! Ingress calls [`Engine::call`] / [`Engine::send_event`]; those return once the message
//! is durable. The store's post-commit hook ([`Dispatch`]) then wakes the [`scheduler`] for
//! actors with new mail and settles request waiters ([`waiters`]). Compiled modules live in
//! the [`registry`].

mod registry;
mod runner;
mod scheduler;
mod waiters;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::domain::{
    ActorId, Clock, Envelope, Limits, MessageKind, RequestId, RetryPolicy, SystemClock, TenantId,
};
use crate::executor::{Executor, ModuleError};
use crate::store::{
    self, ActorView, EnqueueAck, EnqueueRequest, ModuleRecord, ModuleVersion, NewRequest, Notice,
    PostCommit, RequestRecord, Store,
};

pub use registry::Registry;

/// Engine settings (the server's configuration, minus HTTP).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub retry: RetryPolicy,
    /// Actors whose turns may be in flight at once.
    pub max_active_actors: usize,
    /// Messages of one actor handled back to back before one commit.
    pub batch_per_actor: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("./data"),
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            max_active_actors: 512,
            batch_per_actor: 64,
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
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("engine setup: {0}")]
    Setup(String),
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
                Notice::Mail(actor) => scheduler::notify(&inner, actor),
                Notice::Settled(id, status) => inner.waiters.settle(id, status),
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
    pub fn start(config: EngineConfig) -> Result<Engine, Error> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let dispatch = Arc::new(Dispatch {
            engine: OnceLock::new(),
        });
        let store = Store::open(&config.data_dir, dispatch.clone(), clock.clone())?;
        let registry = Arc::new(Registry::new(config.data_dir.join("compiled")));
        let executor =
            Executor::new(config.limits.clone(), registry.clone()).map_err(Error::Setup)?;
        registry.load(&store)?;
        let inner = Arc::new(Inner {
            store,
            executor,
            registry,
            waiters: waiters::Waiters::default(),
            scheduler: scheduler::Scheduler::new(config.max_active_actors),
            clock,
            config,
            rt: tokio::runtime::Handle::current(),
        });
        let _ = dispatch.engine.set(Arc::downgrade(&inner));
        let ready = inner.store.ready_actors()?;
        if !ready.is_empty() {
            tracing::info!(actors = ready.len(), "resuming actors with pending mail");
        }
        for actor in ready {
            scheduler::notify(&inner, actor);
        }
        Ok(Engine { inner })
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
        if self.module_exists(&actor.tenant, &actor.module) {
            Ok(())
        } else {
            Err(Error::UnknownModule(actor.module.clone()))
        }
    }

    fn ack(actor: &ActorId, ack: EnqueueAck) -> Result<u64, Error> {
        match ack {
            EnqueueAck::Accepted { seq } => Ok(seq),
            EnqueueAck::ActorCompleted => Err(Error::ActorCompleted(actor.to_string())),
            EnqueueAck::UnknownModule => Err(Error::UnknownModule(actor.module.clone())),
        }
    }

    /// Durably enqueue a request to an actor; returns its id once it is committed.
    /// Register a waiter with [`Engine::wait`] using the id you pass in.
    pub async fn call(
        &self,
        actor: &ActorId,
        id: RequestId,
        body: Vec<u8>,
        callback_url: Option<String>,
    ) -> Result<(), Error> {
        self.check_target(actor)?;
        let req = EnqueueRequest {
            actor: actor.clone(),
            envelope: Envelope {
                kind: MessageKind::Request { request: id },
                body,
                enqueued_ms: self.now_ms(),
            },
            request: Some(NewRequest { id, callback_url }),
        };
        let ack = self.inner.store.enqueue(req).await?;
        Self::ack(actor, ack).map(|_| ())
    }

    /// Durably enqueue a one-way event.
    pub async fn send_event(&self, actor: &ActorId, body: Vec<u8>) -> Result<u64, Error> {
        self.check_target(actor)?;
        let req = EnqueueRequest {
            actor: actor.clone(),
            envelope: Envelope {
                kind: MessageKind::Event,
                body,
                enqueued_ms: self.now_ms(),
            },
            request: None,
        };
        let ack = self.inner.store.enqueue(req).await?;
        Self::ack(actor, ack)
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
        Ok(
            rec.filter(|r| {
                ActorId::from_storage_key(&r.actor).is_some_and(|a| &a.tenant == tenant)
            }),
        )
    }

    pub fn inspect(&self, actor: &ActorId) -> Result<Option<ActorView>, Error> {
        Ok(self.inner.store.actor_view(actor, 100)?)
    }

    /// Writer counters (for the benchmark).
    pub async fn writer_stats(&self) -> Result<store::WriterStats, Error> {
        Ok(self.inner.store.writer_stats().await?)
    }
}

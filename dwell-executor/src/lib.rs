//! The executor: the only module that knows wasmtime.
//!
//! It compiles and validates components against the `dwell:actor` world, and runs one
//! turn: state + message in, new state + recorded effects out. Each turn is bounded in
//! time (epoch interruption with a per-turn budget of CPU time, and ten times that in
//! wall-clock time; the turn yields to the async runtime every tick so one long turn
//! cannot hog a worker thread), in memory (a
//! per-instance limiter), in stack (wasmtime's stack limit) and in output (state size,
//! effect count and size). WASI is linked with an empty, locked-down context: no files,
//! no environment, no sockets; stderr goes to a small in-memory tail, cleared every turn,
//! that explains a guest panic.
//!
//! A trapped instance is dropped; a healthy one may be kept warm and reused for a later
//! turn of any actor of the same tenant and module version ([`Warm`]) — safe because the
//! state snapshot, not the instance, is the truth.
//!
//! A module may also export `migrate` (the `migrating-actor` world): [`Executor::migrate`]
//! looks it up by name, so modules of the plain `actor` world still load.
//!
//! Long because it is the whole wasmtime boundary in one place: the engine and its
//! limits, compiling, instantiating, a turn, a migration, and what a trap means.

mod cpu;
mod host;
mod stderr;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use dwell_types::{ActorId, Effect, Envelope, Limits, UnixMs};

pub use host::ModuleDirectory;

mod bindings {
    wasmtime::component::bindgen!({
        world: "actor",
        path: "../wit",
        exports: { default: async },
    });
}

use bindings::dwell::actor::types as wit;

/// Why a module was refused at upload.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("the component does not fit the dwell:actor world: {0}")]
    WrongWorld(String),
}

/// Why [`Executor::instantiate`] failed.
#[doc(hidden)]
#[derive(Debug)]
pub enum InstantiateError {
    /// A trap or a limit while instantiating (a start function, a segment out of bounds,
    /// memory or time): the guest's doing, as a trap in a turn is.
    Trapped(String),
    /// Anything else, e.g. a link or type error that validation should have refused.
    Other(String),
}

/// A compiled, pre-linked module, ready to instantiate cheaply.
pub struct CompiledModule {
    pre: bindings::ActorPre<HostState>,
    component: Component,
}

impl CompiledModule {
    /// The compiled artefact, for the on-disk cache.
    pub fn serialize(&self) -> Option<Vec<u8>> {
        self.component.serialize().ok()
    }

    /// The fingerprint of the engine configuration it was compiled for.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(self.component.engine())
    }
}

/// Identifies the wasmtime version and every setting that makes compiled artefacts
/// compatible: the on-disk cache is keyed by it, so a changed configuration compiles
/// afresh instead of failing to load an old artefact at every start.
fn fingerprint_of(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// What a turn produced.
#[derive(Debug)]
pub enum TurnExec {
    Done {
        state: Vec<u8>,
        effects: Vec<Effect>,
    },
    /// The guest returned an error: it refuses this message, with a class when it gave
    /// one (`refuse-as`). Not retried.
    Refused(String, Option<dwell_types::RefusalCode>),
    /// A trap, time-budget or memory-limit breach, or an invalid output. Retried.
    Trapped(String),
}

/// What a call of a module's `migrate` produced.
#[derive(Debug, PartialEq)]
pub enum MigrateExec {
    /// The state to continue from.
    Migrated(Vec<u8>),
    /// The module exports no `migrate` (the plain `actor` world): the state moves as it is.
    Unsupported,
    /// `migrate` refused the state.
    Refused(String),
    /// A trap, a limit, or an invalid output.
    Trapped(String),
}

/// A live, healthy instance kept between turns (of one actor while it is busy, then
/// pooled for any actor of the same tenant and module version).
pub struct Warm {
    store: Store<HostState>,
    actor: bindings::Actor,
    module: Arc<CompiledModule>,
}

impl Warm {
    /// The instance's linear memory in bytes (what keeping it idle costs).
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory_bytes
    }
}

/// Everything a turn needs to know.
pub struct TurnInput<'a> {
    pub actor: &'a ActorId,
    pub now_ms: UnixMs,
    pub state: Option<&'a [u8]>,
    pub envelope: &'a Envelope,
    /// The names of the actor's pending timers before this turn (for the per-actor
    /// timer limit).
    pub timers: Arc<dwell_types::TimerNames>,
    /// The limits of the actor's tenant.
    pub limits: Arc<Limits>,
}

/// Handle to the Wasm engine. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    limits: Arc<Limits>,
    directory: Arc<dyn ModuleDirectory>,
    /// Instances running a turn now (for the node's metrics).
    in_use: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one instance in use for as long as it lives (a turn, however it ends).
struct InUse(Arc<std::sync::atomic::AtomicUsize>);

impl InUse {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InUse(count.clone())
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Raised by the epoch callback when a turn runs past its budget.
#[derive(Debug)]
struct TimeBudgetExceeded(Duration);

impl std::fmt::Display for TimeBudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "turn exceeded its time budget of {} ms",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for TimeBudgetExceeded {}

/// Raised by the limiter when an instance grows past its memory limit.
#[derive(Debug)]
struct MemoryLimitExceeded(usize);

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "turn exceeded the memory limit of {} MiB", self.0 >> 20)
    }
}

impl std::error::Error for MemoryLimitExceeded {}

/// The largest linear memory any tenant may be given (with the pooling allocator every
/// slot is sized for it).
pub const MAX_MEMORY: usize = 4 << 30;

/// A turn is stopped after this many times its budget in wall-clock time, whatever CPU
/// time it got.
const WALL_FACTOR: u32 = 10;

/// How often the epoch advances; the granularity of the time budget.
const EPOCH_TICK: Duration = Duration::from_millis(2);

impl Executor {
    /// `pool_slots`: instances the pooling allocator keeps ready (0 = allocate on
    /// demand). Must cover every instance alive at once: instances of turns executing,
    /// plus the idle ones kept warm.
    pub fn new(
        limits: Limits,
        directory: Arc<dyn ModuleDirectory>,
        pool_slots: u32,
    ) -> Result<Self, String> {
        let mut config = Config::new();
        if pool_slots > 0 {
            // Pre-reserved slots for instances, memories, tables and fiber stacks: an
            // instantiation reuses a slot (copy-on-write memory image, no mmap of a fresh
            // stack) instead of mapping everything anew.
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(pool_slots)
                .total_core_instances(pool_slots * 8)
                .max_core_instances_per_component(32)
                .total_memories(pool_slots * 2)
                .max_memories_per_component(4)
                .total_tables(pool_slots * 8)
                .max_tables_per_component(32)
                .total_stacks(pool_slots)
                .max_memory_size(MAX_MEMORY);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(1 << 20);
        config.async_stack_size(4 << 20);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| e.to_string())?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| e.to_string())?;
        bindings::Actor::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| e.to_string())?;

        // The epoch ticker: a weak reference, so it stops when the engine is dropped.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("dwell-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| e.to_string())?;

        Ok(Executor {
            engine,
            linker: Arc::new(linker),
            limits: Arc::new(limits),
            directory,
            in_use: Arc::default(),
        })
    }

    /// Instances running a turn now.
    pub fn instances_in_use(&self) -> usize {
        self.in_use.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// See [`CompiledModule::fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.engine)
    }

    /// Compile and validate a component. CPU-heavy: call it off the async workers.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledModule, ModuleError> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        self.prelink(component)
    }

    fn prelink(&self, component: Component) -> Result<CompiledModule, ModuleError> {
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ModuleError::WrongWorld(format!("{e:#}")))?;
        let pre =
            bindings::ActorPre::new(pre).map_err(|e| ModuleError::WrongWorld(format!("{e:#}")))?;
        Ok(CompiledModule { pre, component })
    }

    /// Load an artefact written by [`CompiledModule::serialize`] with this same engine
    /// configuration. `None` if it does not fit (another wasmtime version or config).
    pub fn load_compiled(&self, artefact: &[u8]) -> Option<CompiledModule> {
        // SAFETY: the artefact was produced by `Component::serialize` of this program and
        // read back from the node's own cache directory (never from a user); wasmtime
        // checks its version and configuration header before use.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, artefact) }.ok()?;
        self.prelink(component).ok()
    }

    fn new_store(&self) -> Store<HostState> {
        let stderr = stderr::TailPipe::default();
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            memory_limit: self.limits.memory_bytes,
            memory_hit: false,
            memory_bytes: 0,
            turn: host::TurnCtx::new(self.limits.clone(), self.directory.clone()),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store.epoch_deadline_callback(|mut ctx| {
            let turn = &mut ctx.data_mut().turn;
            // The budget is CPU time; a turn starved of CPU for many times its budget
            // (it holds its tenant's permit meanwhile) is stopped all the same.
            let used = turn.cpu.tick();
            if used > turn.budget || turn.started.elapsed() > turn.budget * WALL_FACTOR {
                Err(wasmtime::Error::new(TimeBudgetExceeded(turn.budget)))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Instantiate `module` in a fresh store, as the first turn of a cold actor does,
    /// without calling `handle`. For the module fuzzer (`fuzz/`), which checks that what
    /// [`Executor::compile`] accepts also instantiates against the world.
    #[doc(hidden)]
    pub async fn instantiate(&self, module: &CompiledModule) -> Result<(), InstantiateError> {
        let mut store = self.new_store();
        let actor = ActorId::new(dwell_types::TenantId(String::new()), "", "");
        store
            .data_mut()
            .turn
            .begin(&actor, 0, Default::default(), &self.limits);
        store.set_epoch_deadline(1);
        match module.pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.is::<wasmtime::Trap>()
                    || e.is::<TimeBudgetExceeded>()
                    || e.is::<MemoryLimitExceeded>()
                    || store.data().memory_hit =>
            {
                Err(InstantiateError::Trapped(describe_trap(&e, &store)))
            }
            Err(e) => Err(InstantiateError::Other(format!("{e:#}"))),
        }
    }

    /// Call `migrate` of `module` on `state`, an actor's state on version `from_version`
    /// of the module, in a fresh instance under the turn limits. Effects it records are
    /// dropped: nothing is performed.
    pub async fn migrate(
        &self,
        module: &CompiledModule,
        input: TurnInput<'_>,
        from_version: u32,
        state: &[u8],
    ) -> MigrateExec {
        let _in_use = InUse::new(&self.in_use);
        let mut store = self.new_store();
        store.data_mut().memory_limit = input.limits.memory_bytes;
        store
            .data_mut()
            .turn
            .begin(input.actor, input.now_ms, input.timers, &input.limits);
        store.set_epoch_deadline(1);
        let instance = match module
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
        {
            Ok(i) => i,
            Err(e) => return MigrateExec::Trapped(describe_trap(&e, &store)),
        };
        let Some(func) = instance.get_func(&mut store, "migrate") else {
            return MigrateExec::Unsupported;
        };
        let typed = match func.typed::<(u32, &[u8]), (Result<Vec<u8>, String>,)>(&store) {
            Ok(f) => f,
            Err(e) => return MigrateExec::Refused(format!("`migrate` has the wrong type: {e}")),
        };
        let out = typed.call_async(&mut store, (from_version, state)).await;
        store.data_mut().turn.end_logs();
        match out {
            Ok((Ok(s),)) if s.len() > input.limits.state_bytes => MigrateExec::Trapped(format!(
                "the migrated state is {} bytes, over the limit of {} bytes",
                s.len(),
                input.limits.state_bytes
            )),
            Ok((Ok(s),)) => MigrateExec::Migrated(s),
            Ok((Err(e),)) => MigrateExec::Refused(truncate(e, 4096)),
            Err(e) => MigrateExec::Trapped(describe_trap(&e, &store)),
        }
    }

    /// Run one turn. `warm` is an idle instance from the pool (reused if
    /// it is of the same module) and receives the instance back if it is still healthy.
    pub async fn run_turn(
        &self,
        module: &Arc<CompiledModule>,
        warm: &mut Option<Warm>,
        input: TurnInput<'_>,
    ) -> TurnExec {
        let _in_use = InUse::new(&self.in_use);
        let mut inst = match warm.take() {
            Some(w) if Arc::ptr_eq(&w.module, module) => w,
            _ => {
                let mut store = self.new_store();
                store.data_mut().memory_limit = input.limits.memory_bytes;
                store.data_mut().turn.begin(
                    input.actor,
                    input.now_ms,
                    input.timers.clone(),
                    &input.limits,
                );
                store.set_epoch_deadline(1);
                match module.pre.instantiate_async(&mut store).await {
                    Ok(actor) => Warm {
                        store,
                        actor,
                        module: module.clone(),
                    },
                    Err(e) => return TurnExec::Trapped(describe_trap(&e, &store)),
                }
            }
        };
        inst.store.data_mut().memory_limit = input.limits.memory_bytes;
        inst.store.data().stderr.clear();
        inst.store
            .data_mut()
            .turn
            .begin(input.actor, input.now_ms, input.timers, &input.limits);
        inst.store.set_epoch_deadline(1);
        let msg = to_wit_message(input.envelope);
        let result = inst
            .actor
            .call_handle(&mut inst.store, input.state, &msg)
            .await;
        inst.store.data_mut().turn.end_logs();
        match result {
            Ok(Ok(state)) => {
                if state.len() > input.limits.state_bytes {
                    return TurnExec::Trapped(format!(
                        "the new state is {} bytes, over the limit of {} bytes",
                        state.len(),
                        input.limits.state_bytes
                    ));
                }
                let effects = inst.store.data_mut().turn.take_effects();
                *warm = Some(inst);
                TurnExec::Done { state, effects }
            }
            Ok(Err(refusal)) => {
                inst.store.data_mut().turn.take_effects();
                let code = inst.store.data_mut().turn.take_refusal();
                *warm = Some(inst);
                TurnExec::Refused(truncate(refusal, 4096), code)
            }
            Err(e) => TurnExec::Trapped(describe_trap(&e, &inst.store)),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A trap in words a caller can act on.
fn describe_trap(e: &wasmtime::Error, store: &Store<HostState>) -> String {
    if let Some(t) = e.downcast_ref::<TimeBudgetExceeded>() {
        return t.to_string();
    }
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return m.to_string();
    }
    if store.data().memory_hit {
        return MemoryLimitExceeded(store.data().memory_limit).to_string();
    }
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "guest trapped: call stack exhausted".to_owned(),
        Some(t) => format!("guest trapped: {t}"),
        None => format!("guest failed: {}", e.root_cause()),
    };
    let stderr = store.data().stderr.contents();
    let said = String::from_utf8_lossy(&stderr);
    let last = said
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("note:"));
    match last {
        Some(line) => truncate(format!("{what}; guest said: {line}"), 4096),
        None => what,
    }
}

fn to_wit_message(env: &Envelope) -> wit::Message {
    use dwell_types::{MessageKind, ReplyTo};
    match &env.kind {
        MessageKind::Request { request } => wit::Message::Request(wit::RequestMsg {
            reply_to: ReplyTo::Request(*request).to_handle(),
            body: env.body.clone(),
        }),
        MessageKind::Ask { from, correlation } => wit::Message::Request(wit::RequestMsg {
            reply_to: ReplyTo::Actor {
                actor: from.clone(),
                correlation: correlation.clone(),
            }
            .to_handle(),
            body: env.body.clone(),
        }),
        MessageKind::Event => wit::Message::Event(env.body.clone()),
        MessageKind::Timer { name } => wit::Message::Timer(wit::TimerMsg {
            name: name.clone(),
            payload: env.body.clone(),
        }),
        MessageKind::HttpResult { call_id, outcome } => {
            wit::Message::HttpResult(wit::HttpResultMsg {
                call_id: call_id.clone(),
                outcome: outcome.clone().map(|r| wit::HttpResponse {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                }),
            })
        }
        MessageKind::AskReply {
            correlation,
            outcome,
        } => wit::Message::AskReply(wit::AskReplyMsg {
            correlation: correlation.clone(),
            outcome: outcome.clone(),
        }),
    }
}

/// The data of one wasmtime store: WASI plumbing, limits and the turn being recorded.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: stderr::TailPipe,
    memory_limit: usize,
    memory_hit: bool,
    /// The instance's linear memory, in bytes, as last grown.
    memory_bytes: usize,
    turn: host::TurnCtx,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_hit = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded(self.memory_limit)));
        }
        self.memory_bytes = self.memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

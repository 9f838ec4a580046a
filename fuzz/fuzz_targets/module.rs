//! Module upload validation: bytes through `Executor::compile` (what `PUT /v1/modules`
//! runs), with the executor configured as the server configures it (pooling allocator).
//!
//! Inputs come four ways:
//! - bytes starting with `\0asm` are uploaded as they are (the seeds include the real
//!   example components, which libFuzzer mutates);
//! - otherwise the first byte picks a generator over the rest:
//!   0. the bytes as they are;
//!   1. a `wasm-smith` component (its component support is partial: these are mostly
//!      refused, which exercises the validator on odd shapes);
//!   2. a component that fits the `dwell:actor` world by construction: a `wasm-smith` core
//!      module with exactly the exports and a subset of the imports of the world's
//!      canonical ABI, wrapped by `wit-component` with the world's type information;
//!   3. the same, built for a world that does not fit (`handle` returning another type, or
//!      named otherwise).
//!
//! Properties:
//! - nothing panics, and a refusal says why (a non-empty message);
//! - a component that fits the world is accepted; one that does not is refused as
//!   [`ModuleError::WrongWorld`];
//! - whatever is accepted instantiates, unless instantiating traps or hits a limit
//!   ([`InstantiateError::Trapped`]) — never a link or type error;
//! - whatever is accepted runs a turn (twice, the second on the warm instance if it was
//!   kept) to a result within the turn's limits: a new state no larger than the limit, no
//!   more effects than allowed.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Unstructured;
use dwell::domain::{ActorId, Envelope, Limits, MessageKind, RequestId, TenantId};
use dwell::executor::{Executor, ModuleDirectory, ModuleError, TurnExec, TurnInput, Warm};
use dwell::fuzzing::InstantiateError;
use libfuzzer_sys::fuzz_target;
use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve, WorldId};

/// The world, and two that a module must not be accepted for.
const WIT: &str = include_str!("../../wit/dwell-actor.wit");

struct Directory;

impl ModuleDirectory for Directory {
    fn module_exists(&self, _tenant: &TenantId, module: &str) -> bool {
        module == "m"
    }
    fn check_outbound(&self, _tenant: &TenantId, _url: &str) -> Result<(), String> {
        Err("no outbound HTTP while fuzzing".into())
    }
    fn admit_log(&self, _tenant: &TenantId, _bytes: usize) -> bool {
        true
    }
}

/// A world to build components for: its type information and the core module shape of
/// its canonical ABI (imports and exports).
struct Shape {
    resolve: Resolve,
    world: WorldId,
    dummy: Vec<u8>,
}

impl Shape {
    fn new(wit: &str) -> Shape {
        let mut resolve = Resolve::default();
        let pkg = resolve
            .push_str("dwell-actor.wit", wit)
            .expect("the WIT parses");
        let world = resolve
            .select_world(&[pkg], Some("actor"))
            .expect("world actor");
        let dummy = wit_component::dummy_module(
            &resolve,
            world,
            ManglingAndAbi::Legacy(LiftLowerAbi::Sync),
        );
        Shape {
            resolve,
            world,
            dummy,
        }
    }

    /// A component for this world around a generated core module, or `None` if the
    /// generator ran out of input or `wit-component` would not wrap what it made.
    fn component(&self, u: &mut Unstructured<'_>) -> Option<Vec<u8>> {
        let config = wasm_smith::Config {
            available_imports: Some(self.dummy.clone()),
            exports: Some(self.dummy.clone()),
            max_funcs: 16,
            max_instructions: 64,
            max_data_segments: 4,
            max_element_segments: 4,
            max_globals: 8,
            // The pooling allocator allows one memory and one table per core module (and
            // refuses more at upload, clearly); the world's ABI brings the one memory.
            max_memories: 0,
            max_tables: 1,
            // Within the executor's table limit, so instantiation never hits it.
            max_table_elements: 1_000,
            max_memory32_bytes: 64 << 20,
            ..supported()
        };
        let module = wasm_smith::Module::new(config, u).ok()?;
        let mut bytes = module.to_bytes();
        wit_component::embed_component_metadata(
            &mut bytes,
            &self.resolve,
            self.world,
            wit_component::StringEncoding::UTF8,
        )
        .ok()?;
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&bytes)
            .ok()?
            .encode()
            .ok()
    }
}

/// A `wasm-smith` configuration with only what wasmtime, as Dwell builds it, supports (no
/// GC, exceptions or threads), so that what fits is not refused for a feature.
fn supported() -> wasm_smith::Config {
    wasm_smith::Config {
        gc_enabled: false,
        reference_types_enabled: false,
        exceptions_enabled: false,
        threads_enabled: false,
        memory64_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        shared_everything_threads_enabled: false,
        relaxed_simd_enabled: false,
        tail_call_enabled: false,
        ..wasm_smith::Config::default()
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    executor: Executor,
    limits: Arc<Limits>,
    fits: Shape,
    misfits: [Shape; 2],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let limits = Limits {
            // Short, so that a looping guest costs little fuzzing time.
            turn_time: Duration::from_millis(20),
            ..Limits::default()
        };
        // Pooling, as the server runs (per-component limits are checked at compile).
        let executor = Executor::new(limits.clone(), Arc::new(Directory), 8).expect("executor");
        let misfit_type = WIT.replace(
            "-> result<list<u8>, string>;\n}",
            "-> result<string, string>;\n}",
        );
        let misfit_name = WIT.replace("export handle:", "export handle-it:");
        assert!(
            misfit_type != WIT && misfit_name != WIT,
            "the misfits differ"
        );
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            executor,
            limits: Arc::new(limits),
            fits: Shape::new(WIT),
            misfits: [Shape::new(&misfit_type), Shape::new(&misfit_name)],
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Any,
    Accept,
    WrongWorld,
}

/// `DWELL_FUZZ_VERBOSE=1`: say what became of each input (to see what the generators
/// reach when replaying a corpus).
fn verbose(what: std::fmt::Arguments<'_>) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("DWELL_FUZZ_VERBOSE").is_some()) {
        eprintln!("module: {what}");
    }
}

fn check(f: &Fixture, bytes: &[u8], expect: Expect, u: &mut Unstructured<'_>) {
    let result = f.executor.compile(bytes);
    verbose(format_args!(
        "{expect:?}, {} bytes: {}",
        bytes.len(),
        match &result {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.to_string().chars().take(160).collect(),
        }
    ));
    let compiled = match result {
        Ok(m) => m,
        Err(e) => {
            let why = e.to_string();
            assert!(why.len() > 40, "a refusal says why: {why:?}");
            match (expect, &e) {
                (Expect::Accept, _) => {
                    std::fs::write("refused-fit.wasm", bytes).ok();
                    panic!("a component that fits the world was refused: {why}")
                }
                (Expect::WrongWorld, ModuleError::WrongWorld(_)) | (Expect::Any, _) => {}
                (Expect::WrongWorld, ModuleError::Invalid(_)) => {
                    panic!("a valid component for another world was refused as invalid: {why}")
                }
            }
            return;
        }
    };
    assert!(
        expect != Expect::WrongWorld,
        "a component for another world was accepted"
    );
    let module = Arc::new(compiled);
    f.rt.block_on(async {
        match f.executor.instantiate(&module).await {
            Ok(()) => verbose(format_args!("instantiated")),
            Err(InstantiateError::Trapped(why)) => {
                verbose(format_args!("instantiation trapped: {why}"));
                return;
            }
            // The executor's own table limit (100,000 elements) answers `false` to the
            // growth, which wasmtime reports as this error rather than a trap.
            Err(InstantiateError::Other(e)) if e.contains("exceeds table limits") => return,
            Err(InstantiateError::Other(e)) => {
                std::fs::write("accepted-not-instantiable.wasm", bytes).ok();
                panic!("accepted, but does not instantiate: {e}")
            }
        }
        let actor = ActorId::new(TenantId::default_tenant(), "m", "k");
        let mut warm: Option<Warm> = None;
        let mut state: Option<Vec<u8>> = None;
        for turn in 0..2u8 {
            let body: Vec<u8> = u.arbitrary().unwrap_or_default();
            let kind = match u.int_in_range(0..=2).unwrap_or(0) {
                0 => MessageKind::Request {
                    request: RequestId(u128::from(turn)),
                },
                1 => MessageKind::Event,
                _ => MessageKind::Timer { name: "t".into() },
            };
            let envelope = Envelope {
                kind,
                body,
                enqueued_ms: 1,
                trace: None,
            };
            let input = TurnInput {
                actor: &actor,
                now_ms: 1_000,
                state: state.as_deref(),
                envelope: &envelope,
                timers: Default::default(),
                limits: f.limits.clone(),
            };
            let exec = f.executor.run_turn(&module, &mut warm, input).await;
            verbose(format_args!("turn: {exec:?}"));
            match exec {
                TurnExec::Done {
                    state: new,
                    effects,
                } => {
                    assert!(new.len() <= f.limits.state_bytes, "state over the limit");
                    assert!(
                        effects.len() <= f.limits.effects_per_turn,
                        "{} effects, over the limit",
                        effects.len()
                    );
                    state = Some(new);
                }
                TurnExec::Refused(why, _) => assert!(why.len() <= 4096 + 3, "refusal truncated"),
                TurnExec::Trapped(why) => assert!(!why.is_empty(), "a trap says why"),
            }
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if data.starts_with(b"\0asm") {
        let mut u = Unstructured::new(&[]);
        check(f, data, Expect::Any, &mut u);
        return;
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    match mode % 4 {
        0 => check(f, rest, Expect::Any, &mut Unstructured::new(&[])),
        1 => {
            if let Ok(c) = wasm_smith::Component::new(supported(), &mut u) {
                check(f, &c.to_bytes(), Expect::Any, &mut u);
            }
        }
        2 => {
            if let Some(c) = f.fits.component(&mut u) {
                check(f, &c, Expect::Accept, &mut u);
            }
        }
        _ => {
            let which = usize::from(mode / 4 % 2);
            if let Some(c) = f.misfits[which].component(&mut u) {
                check(f, &c, Expect::WrongWorld, &mut u);
            }
        }
    }
});

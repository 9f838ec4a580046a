//! Dwell: a WebAssembly-hosted actor runtime for long-running processes. This crate is
//! the `dwell` binary's: the command line, `dwell serve`'s configuration and the wiring
//! of the stages, each its own crate (named after the stage it owns):
//!
//! # Layout — follow one HTTP call
//!
//! - [`http`] (crate `dwell-http`) — the API (actix-web): validates input, converts
//!   JSON ↔ MessagePack at the edge, and calls the [`engine::Engine`] handle. Errors
//!   become problem+json here. It never touches storage.
//! - [`engine`] (crate `dwell-engine`) — ingress operations, the scheduler (one turn at a
//!   time per actor; quick calls handed to runners in memory), the runner that executes
//!   batches of turns and commits a message together with its turn when it can, timers,
//!   the outbox, request waiters, the warm-instance pool, the registry of compiled
//!   modules, and [`store`]: the storage handle whose single writer commits many
//!   enqueues and turn outcomes per transaction (group commit) over any backend of the
//!   contract, and only then releases replies and wakes actors (the output gate).
//! - `dwell-core` — the turn's decisions, pure, over the contract's tables;
//!   `dwell-storage` — the contract; `dwell-storage-redb` and `dwell-storage-postgres`
//!   — its backends, opened by [`storage`] (the one place that names both).
//! - [`executor`] (crate `dwell-executor`) — wasmtime: compiles and validates
//!   components, runs one turn with time, memory and output limits; host imports only
//!   record effects.
//! - [`domain`] (crate `dwell-types`) — plain types: ids, messages, effects, limits,
//!   retry policy.
//! - [`tls`] (crate `dwell-tls`) — certificates: the server's TLS config and the roots
//!   clients trust.
//! - [`client`] — the small HTTP client behind the `dwell` CLI commands, and [`output`]
//!   — how they print replies (tables, or the JSON with `-o json`).
//! - [`config`] — `dwell serve`'s options: defaults < config file < `DWELL_*` < flags.
//! - `fuzzing` (hidden) — what the fuzz targets in `fuzz/` need of the HTTP edge.
//!
//! Invariants are listed in ARCHITECTURE.md at the repository root.

pub mod client;
pub mod config;
pub use dwell_engine as engine;
pub use dwell_engine::store;
pub use dwell_executor as executor;
pub use dwell_http as http;
pub use dwell_tls as tls;
pub use dwell_types as domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod output;
pub mod storage;

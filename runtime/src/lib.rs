//! Dwell: a WebAssembly-hosted actor runtime for long-running processes.
//!
//! # Layout — follow one HTTP call
//!
//! - [`http`] — the API (actix-web): validates input, converts JSON ↔ MessagePack at the
//!   edge, and calls the [`engine::Engine`] handle. Errors become problem+json here.
//! - [`engine`] — the glue: ingress operations, the [`engine`] scheduler (one turn at a
//!   time per actor; quick calls handed to runners in memory), the runner that executes
//!   batches of turns and commits a message together with its turn when it can, timers,
//!   request waiters, the warm-instance pool and the registry of compiled modules.
//! - [`store`] — the engine's storage handle over any backend of the contract
//!   (`dwell-storage`). One writer thread commits many enqueues and turn outcomes per
//!   transaction (group commit) and only then releases replies and wakes actors (the
//!   output gate). [`storage`] opens the backend: the redb file (`dwell-storage-redb`) or
//!   PostgreSQL (`dwell-storage-postgres`).
//! - [`executor`] (crate `dwell-executor`) — wasmtime: compiles and validates components, runs one turn with time,
//!   memory and output limits; host imports only record effects.
//! - [`domain`] (crate `dwell-types`) — plain types and decisions: ids, messages, effects, limits, retry policy.
//! - [`tls`] — certificates: the server's TLS config and the roots clients trust.
//! - [`client`] — the small HTTP client behind the `dwell` CLI commands, and [`output`]
//!   — how they print replies (tables, or the JSON with `-o json`).
//! - [`config`] — `dwell serve`'s options: defaults < config file < `DWELL_*` < flags.
//! - `fuzzing` (hidden) — what the fuzz targets in `fuzz/` need of private modules.
//!
//! Invariants are listed in ARCHITECTURE.md at the repository root.

pub mod client;
pub mod config;
pub use dwell_types as domain;
pub mod engine;
pub use dwell_executor as executor;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod output;
pub mod storage;
pub mod store;
pub mod tls;

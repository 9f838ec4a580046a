//! `dwell-testkit`: what the end-to-end tests (`tests/e2e/harness.rs`) and the benchmark
//! (`dwell-bench`) share, kept once: running the real `dwell serve` binary as a child
//! process and the scaffolding around it. It speaks no HTTP: the tests use ureq and
//! the benchmark its own load-tuned client, each on top of [`ServerProcess::base`].
//!
//! Layout:
//! - `server.rs`: [`ServerProcess`], one `dwell serve` on `127.0.0.1:0` with a data
//!   directory, started from [`ServerOptions`]; its address, keys, pid, log and stdout;
//!   stopping (SIGTERM, then SIGKILL after a grace period), killing, restarting on the
//!   same data. The only place that signals a process.
//! - `database.rs`: [`database_url`], one PostgreSQL database per data directory
//!   (named by a stable hash of the path, made on first use), so a restart on the same
//!   directory finds its state.
//! - `guests.rs`: [`workspace_root`], and [`build_guests`]/[`guest`], the example
//!   guests built for `wasm32-wasip2` into `target/guests`, once per process.
//! - `poll.rs`: [`eventually`], polling a condition until a deadline instead of
//!   sleeping for a guessed time.
//!
//! Errors are one `thiserror` enum per module; callers decide whether to panic (tests)
//! or report (the benchmark).

mod database;
mod guests;
mod poll;
mod server;

pub use database::{Error as PostgresError, database_url};
pub use guests::{Error as GuestError, build_guests, guest, workspace_root};
pub use poll::eventually;
pub use server::{Error as ServerError, ServerOptions, ServerProcess, Stopped};

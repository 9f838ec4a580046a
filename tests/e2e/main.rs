//! End-to-end tests: the real `dwell` binary, real HTTP on 127.0.0.1:0, real redb files
//! and real Wasm components built from `examples/`. One test binary (see harness.rs).

mod cli;
mod cluster;
mod console;
mod examples;
#[allow(dead_code)]
mod fake;
mod foundation;
mod hardening;
mod harness;
mod metrics;
mod openapi;
mod processes;
mod semantics;
mod storage;
mod tenancy;
mod tidy;
mod tls;
mod tracing;
mod upgrades;
mod visibility;
mod walkthrough;
mod webdriver;

/// The example crates the harness builds for wasm32-wasip2.
pub const GUESTS: &[&str] = &[
    "counter",
    "checkin",
    "checkin-v2",
    "checkin-v3",
    "hostile",
    "probe",
    "payment",
    "trip",
];

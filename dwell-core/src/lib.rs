//! The turn core: every decision about what a write does to the durable state, once,
//! over the storage contract ([`dwell_storage::Tables`]) — so every backend applies the
//! same rules and none copies them.
//!
//! [`Tx`] is one write transaction's worth of decisions: enqueue a message (creating the
//! actor within its tenant's quota, honouring `Idempotency-Key`s), commit a runner's
//! turns (exactly once: a stale turn is skipped; inline turns apply only to the actor as
//! the runner saw it, else they fall back to the mailbox), settle requests, route
//! replies and dead letters, set, cancel and fire timers, move the outbox, forget expired
//! keys, and the admin cascades (tenant and actor deletion, purges, module versions).
//! It returns what the commit must announce ([`Notice`]) and never touches a channel,
//! a thread or a file: the backend's writer does that around it.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod ops;
mod tx;

pub use ops::*;
pub use tx::{InlineAck, Tx};

/// The conformance scenarios on the reference backend itself (the model-based test
/// needs a backend other than the reference; each backend's crate runs it).
#[cfg(test)]
mod tests {
    use crate::conformance::Memory;
    crate::conformance_tests!(scenarios: Memory::default());
}

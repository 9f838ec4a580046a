//! The pure core: ids, messages, effects, turn outcomes and the decisions about them
//! (retry backoff, name validation). Nothing here knows about tokio, redb, wasmtime or
//! actix-web, so every decision can be tested without a server.

pub mod history;
mod ids;
mod message;
pub mod placement;
mod policy;
pub mod records;
mod tenancy;
pub mod trace;
pub mod upgrade;

pub use ids::{ActorId, Digest, RequestId, TenantId, stable_hash, validate_name};
#[doc(hidden)]
pub use message::serde_bytes_vec;
pub use message::{
    ActorStatus, Effect, Envelope, HttpCallSpec, HttpReply, MessageKind, RefusalCode, ReplyTo,
    RequestStatus, TimerNames, TurnResult,
};
pub use policy::{Limits, RetryPolicy};
pub use tenancy::{
    HISTORY_AGE_S, HISTORY_TURNS, MAX_CONCURRENT_TURNS, MAX_HISTORY_TURNS, QuotaOverrides, Quotas,
    TokenBucket, hash_key, is_private, key_id, new_key, same_hash,
};
pub use trace::TraceParent;

/// A guest's MessagePack as JSON, or, when it has no JSON form (binary, non-string map
/// keys), a JSON object carrying it in base64.
pub fn msgpack_to_json(msgpack: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    rmp_serde::from_slice::<serde_json::Value>(msgpack).unwrap_or_else(|_| {
        serde_json::json!({
            "msgpack_base64": base64::engine::general_purpose::STANDARD.encode(msgpack)
        })
    })
}

/// Milliseconds since the Unix epoch.
pub type UnixMs = u64;

/// A future that resolves when a [`Clock`] reaches a time.
pub type Sleep = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// The time source. Production uses the system clock; engine tests drive a manual one,
/// so timers, backoff and expiry are tested by advancing time instead of sleeping
/// (both are in `engine::clock`).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> UnixMs;
    /// Resolves once `now_ms() >= at` (at once if it already is).
    fn sleep_until(&self, at: UnixMs) -> Sleep;
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn system_now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! Records of what Dwell keeps: actors' bookkeeping, requests and their callbacks, outbox
//! deliveries, idempotency keys, dead letters, modules, tenants and API keys. Every
//! storage backend stores exactly these (the redb store encodes each as a schema byte +
//! MessagePack); the engine and the HTTP layer read them without knowing the backend.

use serde::{Deserialize, Serialize};

use crate::{
    ActorId, ActorStatus, Envelope, HttpCallSpec, QuotaOverrides, RequestStatus, TraceParent,
    UnixMs,
};

/// An actor's bookkeeping (its state snapshot lives in its own table so that an enqueue
/// does not rewrite it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActorMeta {
    pub module: String,
    pub digest: String,
    pub version: u32,
    pub status: ActorStatus,
    /// Sequence number of the oldest unprocessed message. The next message gets one more
    /// than the last key in the mailbox (or `head_seq` when it is empty), so an enqueue to
    /// an existing actor writes only its mailbox entry.
    pub head_seq: u64,
    pub turns: u64,
    pub dead_letters: u64,
    pub created_ms: UnixMs,
    pub updated_ms: UnixMs,
    /// Pending timers.
    pub timers: u32,
    /// The step the process is in: the last one a turn named (see
    /// [`crate::history::step_of`]).
    #[serde(default)]
    pub step: Option<String>,
    /// Where the actor's history lies, for a backend that keeps all actors' history in
    /// one log (redb); backends with per-actor tables leave it as it is.
    #[serde(default)]
    pub history: crate::history::HistoryHead,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The target actor (kept as its storage key `tenant/module/key`).
    #[serde(with = "crate::ids::as_storage_key")]
    pub actor: ActorId,
    pub status: RequestStatus,
    pub created_ms: UnixMs,
    pub settled_ms: Option<UnixMs>,
    pub callback_url: Option<String>,
    /// Delivery of the callback, once the request has settled.
    pub callback: Option<CallbackStatus>,
    /// The call's trace context, for its callback's `traceparent`.
    #[serde(default)]
    pub trace: Option<TraceParent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallbackStatus {
    Pending { attempts: u32 },
    Delivered { attempts: u32, at_ms: UnixMs },
    GaveUp { attempts: u32, error: String },
}

/// Something to send out after commit, from the durable outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Delivery {
    /// A guest's outbound HTTP call; the result goes back to `actor`.
    Http {
        #[serde(with = "crate::ids::as_storage_key")]
        actor: ActorId,
        spec: HttpCallSpec,
    },
    /// A request's result, POSTed to its callback URL.
    Callback {
        request: u128,
        url: String,
        /// The call's trace context, for the `traceparent` header.
        #[serde(default)]
        trace: Option<TraceParent>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub delivery: Delivery,
    /// When the next attempt is due.
    pub due_ms: UnixMs,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_ms: UnixMs,
    pub last_error: Option<String>,
}

/// An idempotency key's memory: what the first use of the key produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    #[serde(with = "crate::ids::as_storage_key")]
    pub actor: ActorId,
    pub request: Option<u128>,
    pub seq: u64,
    pub expires_ms: UnixMs,
    /// SHA-256 of what the first use sent (kind, actor, body); records written before
    /// fingerprints existed have none and match any repeat.
    #[serde(default)]
    pub fingerprint: Option<[u8; 32]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub envelope: Envelope,
    pub error: String,
    pub attempts: u32,
    pub at_ms: UnixMs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleVersion {
    pub version: u32,
    pub digest: String,
    pub size: u64,
    pub created_ms: UnixMs,
}

/// All versions of one module name, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleRecord {
    pub versions: Vec<ModuleVersion>,
}

impl ModuleRecord {
    pub fn latest(&self) -> Option<&ModuleVersion> {
        self.versions.last()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantRecord {
    pub created_ms: UnixMs,
    pub quotas: QuotaOverrides,
    /// Callback signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// Outbound destinations this tenant's guests may reach, besides the platform's.
    pub allow_http: Vec<String>,
    /// (Last: records written before it lack it.) The tenant's identity in every storage key (`<id>/module/key`): its name for
    /// tenants created before identities existed, else the name and a random suffix,
    /// so a tenant created again under a deleted one's name shares nothing with it.
    #[serde(default)]
    pub id: Option<String>,
}

/// Meta-table key prefix of a deleted tenant's purge job: `purge/<tenant id>`.
pub const PURGE_PREFIX: &str = "purge/";

/// How far the purge of a deleted tenant got: actors and idempotency keys go first (by
/// prefix); then the outbox (phase 0) and the requests (phase 1) are scanned from
/// `cursor`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PurgeJob {
    pub phase: u8,
    pub cursor: u128,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub tenant: String,
    /// SHA-256 of the key.
    #[serde(with = "crate::serde_bytes_vec")]
    pub hash: Vec<u8>,
    pub created_ms: UnixMs,
}

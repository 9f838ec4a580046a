//! Storage records: how things look on disk. These are not domain types; they are
//! encoded as one schema-version byte followed by MessagePack, so the format can evolve.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::{ActorStatus, Envelope, HttpCallSpec, QuotaOverrides, RequestStatus, UnixMs};

use super::Error;

/// Current on-disk schema version.
pub const SCHEMA: u8 = 1;

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA];
    // Encoding plain structs into a Vec cannot fail.
    rmp_serde::encode::write(&mut out, v).expect("record encoding");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match bytes.split_first() {
        Some((&SCHEMA, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| Error::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(Error::Corrupt(format!("unknown schema version {v}"))),
        None => Err(Error::Corrupt("empty record".into())),
    }
}

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Storage key of the target actor (`tenant/module/key`).
    pub actor: String,
    pub status: RequestStatus,
    pub created_ms: UnixMs,
    pub settled_ms: Option<UnixMs>,
    pub callback_url: Option<String>,
    /// Delivery of the callback, once the request has settled.
    pub callback: Option<CallbackStatus>,
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
    Http { actor: String, spec: HttpCallSpec },
    /// A request's result, POSTed to its callback URL.
    Callback { request: u128, url: String },
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
    pub actor: String,
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
    #[serde(with = "crate::domain::serde_bytes_vec")]
    pub hash: Vec<u8>,
    pub created_ms: UnixMs,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as the release before refusals and fingerprints wrote them.
    #[derive(Serialize)]
    enum OldStatus {
        #[allow(dead_code)]
        Pending,
        Failed {
            error: String,
        },
    }

    #[derive(Serialize)]
    struct OldIdempotency {
        actor: String,
        request: Option<u128>,
        seq: u64,
        expires_ms: UnixMs,
    }

    #[test]
    fn records_written_before_refusals_and_fingerprints_still_decode() {
        let old = encode(&OldStatus::Failed {
            error: "boom".into(),
        });
        let status: RequestStatus = decode(&old).unwrap();
        assert_eq!(
            status,
            RequestStatus::Failed {
                error: "boom".into(),
                refusal: None
            }
        );
        let old = encode(&OldIdempotency {
            actor: "t/m/k".into(),
            request: Some(7),
            seq: 3,
            expires_ms: 9,
        });
        let rec: IdempotencyRecord = decode(&old).unwrap();
        assert_eq!((rec.seq, rec.fingerprint), (3, None));
        // And the new forms round-trip.
        let new = RequestStatus::Failed {
            error: "closed".into(),
            refusal: Some(crate::domain::RefusalCode::Conflict),
        };
        assert_eq!(decode::<RequestStatus>(&encode(&new)).unwrap(), new);
    }
}

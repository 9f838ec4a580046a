//! How records look on disk: one schema-version byte followed by MessagePack, so the
//! format can evolve. The record types are `dwell_types::records` (shared with the engine
//! and the HTTP layer); this module only encodes and decodes them.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use dwell_types::records::*;

use crate::Error;

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

#[cfg(test)]
mod tests {
    use super::*;
    use dwell_types::{RequestStatus, UnixMs};

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
            refusal: Some(dwell_types::RefusalCode::Conflict),
        };
        assert_eq!(decode::<RequestStatus>(&encode(&new)).unwrap(), new);
    }
}

//! Identifiers. Storage keys are derived here so every layer agrees on them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Check a tenant, module or actor-key name: 1–128 bytes of `[A-Za-z0-9_.:-]`.
/// Names end up in URLs and storage keys, so `/` and control bytes are refused.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("{kind} must be 1 to 128 characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "{kind} {name:?} contains {c:?}; allowed are letters, digits and _ . : -"
        ));
    }
    // `.` and `..` (also sent as `%2e%2e`) name a directory, not a thing.
    if name.chars().all(|c| c == '.') {
        return Err(format!("{kind} {name:?} is only dots"));
    }
    Ok(())
}

/// A tenant: the owner of modules, actors and requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub String);

impl TenantId {
    pub fn default_tenant() -> Self {
        TenantId("default".to_owned())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One process instance: `(tenant, module, key)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorId {
    pub tenant: TenantId,
    pub module: String,
    pub key: String,
}

impl ActorId {
    pub fn new(tenant: TenantId, module: impl Into<String>, key: impl Into<String>) -> Self {
        ActorId {
            tenant,
            module: module.into(),
            key: key.into(),
        }
    }

    /// The storage key `tenant/module/key`. Unambiguous because names never contain `/`.
    pub fn storage_key(&self) -> String {
        format!("{}/{}/{}", self.tenant.0, self.module, self.key)
    }

    pub fn from_storage_key(s: &str) -> Option<ActorId> {
        let mut parts = s.splitn(3, '/');
        let tenant = parts.next()?;
        let module = parts.next()?;
        let key = parts.next()?;
        Some(ActorId::new(TenantId(tenant.to_owned()), module, key))
    }

    /// The storage key of this actor's module: `tenant/module`.
    pub fn module_key(&self) -> String {
        format!("{}/{}", self.tenant.0, self.module)
    }

    /// The actor's partition among a cluster's `count` (fixed when the cluster was
    /// made): [`stable_hash`] of its storage key, modulo `count`. The same on every node,
    /// build and machine, so key → partition never changes.
    pub fn partition(&self, count: u32) -> u32 {
        crate::placement::partition_of(&self.storage_key(), count)
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every process, build and machine (unlike
/// `std`'s `DefaultHasher`), for choices that must never move: an actor's partition, a
/// canary's share of keys.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `#[serde(with = "crate::ids::as_storage_key")]`: an [`ActorId`] kept as its storage
/// key string, so records hold a typed actor and their encoding stays what it was.
pub mod as_storage_key {
    use super::ActorId;

    pub fn serialize<S: serde::Serializer>(a: &ActorId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.storage_key())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ActorId, D::Error> {
        let key = <String as serde::Deserialize>::deserialize(d)?;
        ActorId::from_storage_key(&key)
            .ok_or_else(|| serde::de::Error::custom(format!("not an actor key: {key:?}")))
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.module, self.key)
    }
}

/// A request (an HTTP call waiting for its reply). 128 random bits, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u128);

impl RequestId {
    pub fn random() -> Self {
        RequestId(rand::random())
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(RequestId)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The SHA-256 of a module's bytes, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(bytes);
        let mut s = String::with_capacity(64);
        for b in hash {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_a_stable_hash_of_the_key_spread_evenly() {
        // FNV-1a's published vectors: these values are part of the cluster's format.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        let a = ActorId::new(TenantId("t".into()), "checkin", "6YZJWW");
        assert_eq!(
            a.partition(256),
            (stable_hash(b"t/checkin/6YZJWW") % 256) as u32
        );
        assert_eq!(a.partition(1), 0);
        let mut counts = vec![0u32; 256];
        for i in 0..256_000 {
            let a = ActorId::new(TenantId("acme".into()), "payment", format!("k{i}"));
            counts[a.partition(256) as usize] += 1;
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*lo > 800 && *hi < 1200, "uneven: {lo}..{hi}");
    }

    #[test]
    fn names_reject_slashes_and_empty() {
        assert!(validate_name("key", "6YZJWW").is_ok());
        assert!(validate_name("key", "a/b").is_err());
        assert!(validate_name("key", "").is_err());
        assert!(validate_name("key", &"x".repeat(129)).is_err());
        // Directory names are not names, whatever the caller's encoding was.
        for dots in [".", "..", "..."] {
            assert!(validate_name("key", dots).is_err(), "{dots}");
        }
        assert!(validate_name("key", "a..b").is_ok());
        assert!(validate_name("key", ".hidden").is_ok());
    }

    #[test]
    fn actor_storage_key_round_trips() {
        let a = ActorId::new(TenantId::default_tenant(), "checkin", "6YZ:JWW");
        assert_eq!(ActorId::from_storage_key(&a.storage_key()), Some(a));
    }

    #[test]
    fn request_id_round_trips() {
        let id = RequestId::random();
        assert_eq!(RequestId::parse(&id.to_string()), Some(id));
        assert_eq!(RequestId::parse("zz"), None);
    }
}

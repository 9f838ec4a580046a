//! Tenancy decisions without I/O: quotas (defaults + per-tenant overrides), the request
//! rate token bucket, API keys (generation, hashing, constant-time checks) and which
//! network addresses are private.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::Limits;

/// Per-tenant quota overrides; `None` means the server default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    pub max_modules: Option<u64>,
    pub max_module_bytes: Option<u64>,
    pub max_actors: Option<u64>,
    pub max_state_bytes: Option<u64>,
    pub max_message_bytes: Option<u64>,
    pub turn_time_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub timers_per_actor: Option<u64>,
    pub requests_per_second: Option<u64>,
    pub burst: Option<u64>,
    pub concurrent_turns: Option<u64>,
    #[serde(default)]
    pub history_turns: Option<u64>,
    #[serde(default)]
    pub history_age_s: Option<u64>,
}

/// The quotas in force for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    pub max_modules: u64,
    pub max_module_bytes: u64,
    pub max_actors: u64,
    pub max_state_bytes: u64,
    pub max_message_bytes: u64,
    pub turn_time_ms: u64,
    pub memory_mb: u64,
    pub timers_per_actor: u64,
    /// 0 = unlimited.
    pub requests_per_second: u64,
    pub burst: u64,
    pub concurrent_turns: u64,
    /// Turn records kept per actor (0: no history).
    #[serde(default = "default_history_turns")]
    pub history_turns: u64,
    /// Turn records older than this are dropped.
    #[serde(default = "default_history_age_s")]
    pub history_age_s: u64,
}

/// The server's default: the last 100 turns of each actor.
pub const HISTORY_TURNS: u64 = 100;
/// The server's default: a week.
pub const HISTORY_AGE_S: u64 = 7 * 24 * 3600;

fn default_history_turns() -> u64 {
    HISTORY_TURNS
}

fn default_history_age_s() -> u64 {
    HISTORY_AGE_S
}

impl Quotas {
    /// The server defaults derived from the server's limits.
    pub fn defaults(limits: &Limits) -> Self {
        Quotas {
            max_modules: 100,
            max_module_bytes: limits.module_bytes as u64,
            max_actors: 10_000_000,
            max_state_bytes: limits.state_bytes as u64,
            max_message_bytes: limits.message_bytes as u64,
            turn_time_ms: limits.turn_time.as_millis() as u64,
            memory_mb: (limits.memory_bytes >> 20) as u64,
            timers_per_actor: limits.timers_per_actor as u64,
            requests_per_second: 0,
            burst: 0,
            // By default a tenant's turns use at most half the cores at once, so one
            // tenant's expensive turns always leave room for the others.
            concurrent_turns: std::thread::available_parallelism()
                .map_or(1, |n| (n.get() / 2).max(1) as u64),
            history_turns: HISTORY_TURNS,
            history_age_s: HISTORY_AGE_S,
        }
    }

    pub fn with(&self, o: &QuotaOverrides) -> Quotas {
        Quotas {
            max_modules: o.max_modules.unwrap_or(self.max_modules),
            max_module_bytes: o.max_module_bytes.unwrap_or(self.max_module_bytes),
            max_actors: o.max_actors.unwrap_or(self.max_actors),
            max_state_bytes: o.max_state_bytes.unwrap_or(self.max_state_bytes),
            max_message_bytes: o.max_message_bytes.unwrap_or(self.max_message_bytes),
            turn_time_ms: o.turn_time_ms.unwrap_or(self.turn_time_ms),
            memory_mb: o.memory_mb.unwrap_or(self.memory_mb),
            timers_per_actor: o.timers_per_actor.unwrap_or(self.timers_per_actor),
            requests_per_second: o.requests_per_second.unwrap_or(self.requests_per_second),
            burst: o.burst.unwrap_or(self.burst),
            concurrent_turns: o
                .concurrent_turns
                .unwrap_or(self.concurrent_turns)
                .clamp(1, MAX_CONCURRENT_TURNS),
            history_turns: o
                .history_turns
                .unwrap_or(self.history_turns)
                .min(MAX_HISTORY_TURNS),
            history_age_s: o.history_age_s.unwrap_or(self.history_age_s),
        }
    }

    /// The turn history these quotas keep, with `states` states.
    pub fn retention(&self, states: u64) -> crate::history::Retention {
        crate::history::Retention {
            turns: self.history_turns,
            states: states.min(self.history_turns),
            age_ms: self.history_age_s.saturating_mul(1000),
        }
    }

    /// The executor limits these quotas imply.
    pub fn limits(&self, base: &Limits) -> Limits {
        Limits {
            turn_time: Duration::from_millis(self.turn_time_ms.max(1)),
            memory_bytes: ((self.memory_mb.clamp(1, 4096)) as usize) << 20,
            state_bytes: self.max_state_bytes as usize,
            message_bytes: self.max_message_bytes as usize,
            timers_per_actor: self.timers_per_actor as usize,
            module_bytes: self.max_module_bytes as usize,
            effects_per_turn: base.effects_per_turn,
            log_lines_per_turn: base.log_lines_per_turn,
            log_bytes_per_turn: base.log_bytes_per_turn,
            log_bytes_per_second: base.log_bytes_per_second,
        }
    }
}

/// The most turns of one tenant that may execute at once, whatever a quota says (it
/// becomes a semaphore's permit count).
pub const MAX_CONCURRENT_TURNS: u64 = 4096;

/// The most turn records an actor may keep, whatever a quota says.
pub const MAX_HISTORY_TURNS: u64 = 100_000;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    pub fn new(now_ms: u64) -> Self {
        TokenBucket {
            tokens: f64::MAX,
            last_ms: now_ms,
        }
    }

    /// Take one token. `Err(wait)` says how long until one is available.
    pub fn take(&mut self, now_ms: u64, rate: u64, burst: u64) -> Result<(), Duration> {
        self.take_n(now_ms, 1, rate, burst)
    }

    /// Take `n` tokens at once (at most `burst` ever fit). `rate` 0 is unlimited.
    pub fn take_n(&mut self, now_ms: u64, n: u64, rate: u64, burst: u64) -> Result<(), Duration> {
        if rate == 0 {
            return Ok(());
        }
        let cap = burst.max(1) as f64;
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens.min(cap) + elapsed * rate as f64).min(cap);
        self.last_ms = now_ms;
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.tokens) / rate as f64))
        }
    }
}

/// A new API key: `dw_<id>_<secret>`. The id is public (it names the key); the whole
/// key is only ever stored as its SHA-256.
pub fn new_key(prefix: &str) -> (String, String) {
    use base64::Engine as _;
    let id: [u8; 8] = rand::random();
    let secret: [u8; 32] = rand::random();
    let id = id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let key = format!(
        "{prefix}_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    (id, key)
}

/// The key id inside a `dw_<id>_<secret>` key.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("dw_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then_some(id)
}

pub fn hash_key(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// Compare two hashes without an early exit.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Loopback, private, link-local (which holds cloud metadata services), unspecified,
/// multicast or otherwise non-public: refused as an outbound destination unless the
/// platform allows private networks.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local (incl. fd00:ec2::254)
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate() {
        let mut b = TokenBucket::new(0);
        for _ in 0..5 {
            assert!(b.take(0, 10, 5).is_ok());
        }
        let wait = b.take(0, 10, 5).unwrap_err();
        assert!(wait <= Duration::from_millis(100));
        assert!(b.take(100, 10, 5).is_ok(), "one token after 100 ms at 10/s");
        assert!(
            TokenBucket::new(0).take(0, 0, 0).is_ok(),
            "rate 0 = unlimited"
        );
    }

    #[test]
    fn keys_hash_and_compare() {
        let (id, key) = new_key("dw");
        assert_eq!(key_id(&key), Some(id.as_str()));
        assert!(same_hash(&hash_key(&key), &hash_key(&key)));
        assert!(!same_hash(&hash_key(&key), &hash_key("dw_x")));
        assert_eq!(key_id("Bearer nonsense"), None);
    }

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00:ec2::254",
            "0.0.0.0",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn overrides_apply_over_defaults() {
        let d = Quotas::defaults(&Limits::default());
        let q = d.with(&QuotaOverrides {
            max_actors: Some(3),
            ..Default::default()
        });
        assert_eq!(q.max_actors, 3);
        assert_eq!(q.max_modules, d.max_modules);
        // A stored override far past any real need cannot make a semaphore panic.
        let huge = d.with(&QuotaOverrides {
            concurrent_turns: Some(u64::MAX >> 1),
            ..Default::default()
        });
        assert_eq!(huge.concurrent_turns, MAX_CONCURRENT_TURNS);
    }
}

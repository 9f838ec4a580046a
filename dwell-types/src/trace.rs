//! W3C trace context (`traceparent`, <https://www.w3.org/TR/trace-context/>) as Dwell
//! carries it: taken from a call, kept with the message in the mailbox, handed on to the
//! turn that handles it and from there to what the turn causes — messages to other
//! actors, outbound HTTP calls, the request's callback.
//!
//! A turn's own span id is derived from its parent and the turn's identity
//! ([`TraceParent::child`]), so the writer (which stamps what a turn causes) and the
//! runner (which exports the turn's span) agree on it without passing it around.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One position in a distributed trace: the trace, the span that is the parent of
/// whatever carries this, and whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// Parse a `traceparent` header value. Version `00` exactly as specified; a later
    /// version is read by its first four fields, as the specification asks. `None` for
    /// anything malformed (and for all-zero ids), which then starts a new trace.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let mut parts = value.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) {
            return None;
        }
        if !hex(flags, 2) || (version == "00" && rest.is_some()) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace (sampled), its first span.
    pub fn root() -> TraceParent {
        TraceParent {
            trace_id: rand::random::<u128>().max(1),
            span_id: rand::random::<u64>().max(1),
            sampled: true,
        }
    }

    /// A new span in the same trace with a random id.
    pub fn fresh_child(&self) -> TraceParent {
        TraceParent {
            span_id: rand::random::<u64>().max(1),
            ..*self
        }
    }

    /// The span in the same trace that `salt` names under this one: the same inputs
    /// always give the same id.
    pub fn child(&self, salt: &[&[u8]]) -> TraceParent {
        let mut h = Sha256::new();
        h.update(self.span_id.to_be_bytes());
        for part in salt {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let span_id = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        TraceParent {
            span_id: span_id.max(1),
            ..*self
        }
    }

    /// The span of the turn that handled message `seq` of `actor` (its storage key),
    /// when the message carried this context.
    pub fn turn(&self, actor: &str, seq: u64) -> TraceParent {
        self.child(&[b"turn", actor.as_bytes(), &seq.to_be_bytes()])
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.header())
    }
}

impl TryFrom<String> for TraceParent {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        TraceParent::parse(&value).ok_or_else(|| format!("not a traceparent: {value:?}"))
    }
}

impl From<TraceParent> for String {
    fn from(value: TraceParent) -> String {
        value.header()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_specification_example() {
        let p = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert!(p.sampled);
        assert_eq!(p.header(), EXAMPLE);
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may append fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceParent::parse(later).is_some());
    }

    #[test]
    fn children_stay_in_the_trace_and_are_stable() {
        let p = TraceParent::parse(EXAMPLE).unwrap();
        let t = p.turn("t/m/k", 3);
        assert_eq!(t.trace_id, p.trace_id);
        assert_ne!(t.span_id, p.span_id);
        assert_eq!(t, p.turn("t/m/k", 3));
        assert_ne!(t, p.turn("t/m/k", 4));
        assert_ne!(t, p.turn("t/m/kk", 3));
        let encoded = rmp_serde::to_vec(&Some(t)).unwrap();
        let back: Option<TraceParent> = rmp_serde::from_slice(&encoded).unwrap();
        assert_eq!(back, Some(t));
    }
}

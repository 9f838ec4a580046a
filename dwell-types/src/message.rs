//! Messages, effects and turn results: what flows into a turn and what comes out.

use serde::{Deserialize, Serialize};

use super::{ActorId, RequestId, UnixMs, validate_name};
use crate::trace::TraceParent;

/// Why a message is in a mailbox. Bodies are MessagePack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MessageKind {
    /// An HTTP call; its reply settles the request record.
    Request { request: RequestId },
    /// Another actor's `ask`; the reply goes back to it as an `AskReply`.
    Ask { from: ActorId, correlation: String },
    /// One-way: an HTTP event or another actor's `send`.
    Event,
    /// A fired timer; the body is its payload.
    Timer { name: String },
    /// The final outcome of an outbound HTTP call.
    HttpResult {
        call_id: String,
        outcome: Result<HttpReply, String>,
    },
    /// The reply to this actor's own `ask`.
    AskReply {
        correlation: String,
        outcome: Result<Vec<u8>, String>,
    },
}

/// One mailbox entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub kind: MessageKind,
    #[serde(with = "serde_bytes_vec")]
    pub body: Vec<u8>,
    pub enqueued_ms: UnixMs,
    /// The trace context the message carries (from the call's `traceparent`, or from the
    /// turn that sent it). Records written before tracing existed have none.
    #[serde(default)]
    pub trace: Option<TraceParent>,
}

/// A response received from an outbound HTTP call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes_vec")]
    pub body: Vec<u8>,
}

/// An outbound HTTP call as a guest asked for it (already checked against the allowlist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCallSpec {
    pub call_id: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes_vec")]
    pub body: Vec<u8>,
    pub timeout_ms: u32,
    pub max_attempts: u32,
    /// The turn that made the call, as trace context for its `traceparent` header.
    #[serde(default)]
    pub trace: Option<TraceParent>,
}

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplyTo {
    Request(RequestId),
    Actor { actor: ActorId, correlation: String },
}

impl ReplyTo {
    /// The opaque handle a guest sees and may store in its state.
    pub fn to_handle(&self) -> String {
        match self {
            ReplyTo::Request(id) => format!("req:{id}"),
            ReplyTo::Actor { actor, correlation } => {
                format!("ask:{}/{}/{}", actor.module, actor.key, correlation)
            }
        }
    }

    /// Parse a handle back, within the tenant of the actor that holds it: a handle can
    /// never address another tenant's requests or actors.
    pub fn from_handle(handle: &str, tenant: &super::TenantId) -> Option<ReplyTo> {
        if let Some(id) = handle.strip_prefix("req:") {
            return RequestId::parse(id).map(ReplyTo::Request);
        }
        let rest = handle.strip_prefix("ask:")?;
        let mut parts = rest.splitn(3, '/');
        let module = parts.next()?;
        let key = parts.next()?;
        let correlation = parts.next()?;
        // A guest can forge a handle: it addresses only an actor any API could address.
        validate_name("module", module).ok()?;
        validate_name("actor key", key).ok()?;
        if correlation.len() > 256 {
            return None;
        }
        Some(ReplyTo::Actor {
            actor: ActorId::new(tenant.clone(), module, key),
            correlation: correlation.to_owned(),
        })
    }
}

/// What a turn asks the host to do after it commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    Reply {
        to: ReplyTo,
        outcome: Result<Vec<u8>, String>,
        /// With an `Err`: the process refuses the request for this reason.
        #[serde(default)]
        refusal: Option<RefusalCode>,
    },
    Send {
        to: ActorId,
        body: Vec<u8>,
    },
    Ask {
        to: ActorId,
        body: Vec<u8>,
        correlation: String,
    },
    SetTimer {
        name: String,
        due_ms: UnixMs,
        payload: Vec<u8>,
    },
    CancelTimer {
        name: String,
    },
    HttpCall(HttpCallSpec),
    Complete,
    /// The process names the step it is in (`ctx.step`); recorded in the turn's history
    /// and as the actor's current step. The last one of a turn counts.
    Step {
        label: String,
    },
}

/// The names of an actor's pending timers, as its runner tracks them: the per-actor timer
/// limit is decided from this when a turn sets a timer, so the guest hears a refusal
/// instead of the store dropping an accepted timer later.
pub type TimerNames = std::collections::BTreeSet<String>;

/// The outcome of one message, ready to commit.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnResult {
    /// The guest handled it: new state and its effects.
    Done {
        state: Vec<u8>,
        effects: Vec<Effect>,
    },
    /// The message is given up (guest failed it, or it trapped on every attempt): it
    /// goes to the dead letters and its request, if any, fails with `error`.
    DeadLetter { error: String, attempts: u32 },
    /// The guest refused the message for a reason its caller can act on: it is
    /// consumed, the state stays as it was, and its request fails with the refusal.
    Refused { error: String, refusal: RefusalCode },
}

/// Why a process refused a request (the guest's `refusal-code`), for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalCode {
    Invalid,
    NotFound,
    Conflict,
    FailedPrecondition,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::Invalid => "invalid",
            RefusalCode::NotFound => "not-found",
            RefusalCode::Conflict => "conflict",
            RefusalCode::FailedPrecondition => "failed-precondition",
        }
    }
}

/// A request's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestStatus {
    Pending,
    Completed {
        #[serde(with = "serde_bytes_vec")]
        reply: Vec<u8>,
    },
    Failed {
        error: String,
        /// Set when the process refused the request (records before it have none).
        #[serde(default)]
        refusal: Option<RefusalCode>,
    },
}

impl RequestStatus {
    pub fn is_pending(&self) -> bool {
        matches!(self, RequestStatus::Pending)
    }

    /// `pending`, `completed` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Completed { .. } => "completed",
            RequestStatus::Failed { .. } => "failed",
        }
    }
}

/// An actor's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorStatus {
    Active,
    Completed,
}

/// Vec<u8> as MessagePack `bin` rather than an array of integers.
pub mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantId;

    #[test]
    fn reply_handles_round_trip_within_a_tenant() {
        let t = TenantId::default_tenant();
        let req = ReplyTo::Request(RequestId(42));
        assert_eq!(ReplyTo::from_handle(&req.to_handle(), &t), Some(req));
        let ask = ReplyTo::Actor {
            actor: ActorId::new(t.clone(), "trip", "T1"),
            correlation: "car/1".into(),
        };
        assert_eq!(ReplyTo::from_handle(&ask.to_handle(), &t), Some(ask));
        assert_eq!(ReplyTo::from_handle("nonsense", &t), None);
    }

    #[test]
    fn a_forged_reply_handle_addresses_only_valid_actors() {
        let t = TenantId::default_tenant();
        let long_key = format!("ask:probe/{}/c", "k !".repeat(270));
        for forged in [
            long_key.as_str(),
            "ask:probe/has space/c",
            "ask:probe/../c",
            "ask:../x/c",
            "ask:probe//c",
        ] {
            assert_eq!(ReplyTo::from_handle(forged, &t), None, "{forged}");
        }
        let long_correlation = format!("ask:probe/k/{}", "c".repeat(300));
        assert_eq!(ReplyTo::from_handle(&long_correlation, &t), None);
    }

    #[test]
    fn envelope_bodies_encode_as_bin() {
        let e = Envelope {
            kind: MessageKind::Event,
            body: vec![1, 2, 3],
            enqueued_ms: 7,
            trace: None,
        };
        let bytes = rmp_serde::to_vec(&e).unwrap();
        let back: Envelope = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, e);
    }
}

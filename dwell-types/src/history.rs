//! Turn history: the record every committed turn leaves ([`TurnRecord`]), how it is
//! built from the turn's message and outcome, how long it is kept ([`Retention`]), and
//! the process map mined from many actors' records ([`ProcessMap`]).
//!
//! The records are written by the turn core in the commit of their turn (so the history
//! never shows a turn that did not happen, nor misses one that did); this module only
//! decides what they say.

use serde::{Deserialize, Serialize};

use crate::{Effect, Envelope, MessageKind, ReplyTo, TurnResult, UnixMs};

/// At most this many bytes of a message body are kept in its turn's record.
pub const BODY_LIMIT: usize = 1024;
/// A step label is cut to this many bytes.
pub const LABEL_LIMIT: usize = 128;
/// States above this size are not kept in the history (their size is).
pub const STATE_LIMIT: usize = 64 << 10;

/// How much history an actor keeps: the last `turns` records, the states after the last
/// `states` of them, and nothing older than `age_ms`. `turns == 0` keeps none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub turns: u64,
    pub states: u64,
    pub age_ms: u64,
}

impl Retention {
    pub const OFF: Retention = Retention {
        turns: 0,
        states: 0,
        age_ms: 0,
    };

    pub fn is_on(&self) -> bool {
        self.turns > 0
    }

    /// Whether a record written at `at_ms` is still shown at `now`.
    pub fn fresh(&self, at_ms: UnixMs, now: UnixMs) -> bool {
        self.age_ms == 0 || at_ms.saturating_add(self.age_ms) >= now
    }
}

/// An actor's place in a backend's history logs (see [`crate::records::ActorMeta`]):
/// one chain of turn records and one of states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryHead {
    pub turns: Chain,
    pub states: Chain,
}

/// One actor's entries in an append-only log shared by all actors: each entry names the
/// position of the actor's entry before it, newest first from `head`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// Position of the newest entry (`None`: none yet).
    pub head: Option<u64>,
    /// Every entry of the chain lies at or after this position: an entry under the
    /// actor's key before it belongs to an earlier actor of that name, or is a copy left
    /// behind when the chain moved.
    pub base: u64,
    /// Entries of turns below this sequence number have fallen out of the retention.
    pub floor: u64,
    /// How many entries the chain counts towards the log's live total (at most the
    /// retention's count).
    pub len: u64,
}

/// One committed turn, as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// When the turn committed.
    pub at_ms: UnixMs,
    /// How long the guest ran (0 when it did not run).
    pub took_us: u64,
    pub message: MessageNote,
    /// The step the process is in after this turn: named by the turn (`ctx.step`), or
    /// the message's `type` field; `None` if neither.
    pub step: Option<String>,
    pub effects: Vec<EffectNote>,
    pub outcome: Outcome,
    /// The state's size after the turn (`None`: not known for this turn).
    pub state_bytes: Option<u64>,
    /// What happened to the state: see [`StateMark`].
    pub state: StateMark,
    /// The turn's own trace context (its span), when the message carried one.
    #[serde(default)]
    pub trace: Option<crate::TraceParent>,
}

/// Whether the state after a turn can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateMark {
    /// The turn wrote a state, kept with the record (until it falls out of retention).
    Kept,
    /// The turn left the state as it was (refused, dead-lettered).
    Unchanged,
    /// The turn wrote a state that the history does not keep (too large, or history of
    /// states off).
    NotKept,
}

/// The message a turn handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageNote {
    /// `call`, `event`, `ask`, `timer`, `http_result` or `ask_reply`.
    pub kind: String,
    /// A short label: the body's `type` field, the timer's name, the call id, the
    /// correlation.
    pub label: Option<String>,
    /// The body (MessagePack), at most [`BODY_LIMIT`] bytes of it.
    #[serde(with = "crate::serde_bytes_vec")]
    pub body: Vec<u8>,
    /// The body's full length.
    pub body_len: u64,
    /// The request or the asking actor a reply goes to.
    pub from: Option<String>,
}

/// An effect of a turn, summarised (bodies are not kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EffectNote {
    Reply {
        to: String,
        ok: bool,
    },
    Send {
        to: String,
    },
    Ask {
        to: String,
        correlation: String,
    },
    SetTimer {
        name: String,
        due_ms: UnixMs,
    },
    CancelTimer {
        name: String,
    },
    HttpCall {
        call_id: String,
        method: String,
        url: String,
    },
    Complete,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    Refused { reason: String },
    DeadLetter { reason: String, attempts: u32 },
}

/// `s`, cut to at most `max` bytes at a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The `type` field of a MessagePack map body, if it has one.
pub fn type_label(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tagged {
        #[serde(rename = "type")]
        ty: Option<String>,
    }
    if !matches!(body.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
        return None;
    }
    rmp_serde::from_slice::<Tagged>(body)
        .ok()?
        .ty
        .map(|t| cut(&t, LABEL_LIMIT))
}

impl MessageNote {
    pub fn of(env: &Envelope) -> Self {
        let (kind, label, from) = match &env.kind {
            MessageKind::Request { request } => {
                ("call", type_label(&env.body), Some(request.to_string()))
            }
            MessageKind::Ask { from, correlation } => (
                "ask",
                type_label(&env.body).or_else(|| Some(correlation.clone())),
                Some(from.to_string()),
            ),
            MessageKind::Event => ("event", type_label(&env.body), None),
            MessageKind::Timer { name } => ("timer", Some(name.clone()), None),
            MessageKind::HttpResult { call_id, .. } => ("http_result", Some(call_id.clone()), None),
            MessageKind::AskReply { correlation, .. } => {
                ("ask_reply", Some(correlation.clone()), None)
            }
        };
        let body = &env.body[..env.body.len().min(BODY_LIMIT)];
        MessageNote {
            kind: kind.to_owned(),
            label,
            body: body.to_vec(),
            body_len: env.body.len() as u64,
            from,
        }
    }

    /// Whether `body` is all of the message's body.
    pub fn complete(&self) -> bool {
        self.body.len() as u64 == self.body_len
    }
}

impl EffectNote {
    /// The summary of an effect; `None` for a step label (recorded as the turn's step).
    pub fn of(effect: &Effect) -> Option<Self> {
        Some(match effect {
            Effect::Reply { to, outcome, .. } => EffectNote::Reply {
                to: match to {
                    ReplyTo::Request(id) => id.to_string(),
                    ReplyTo::Actor { actor, .. } => actor.to_string(),
                },
                ok: outcome.is_ok(),
            },
            Effect::Send { to, .. } => EffectNote::Send { to: to.to_string() },
            Effect::Ask {
                to, correlation, ..
            } => EffectNote::Ask {
                to: to.to_string(),
                correlation: correlation.clone(),
            },
            Effect::SetTimer { name, due_ms, .. } => EffectNote::SetTimer {
                name: name.clone(),
                due_ms: *due_ms,
            },
            Effect::CancelTimer { name } => EffectNote::CancelTimer { name: name.clone() },
            Effect::HttpCall(spec) => EffectNote::HttpCall {
                call_id: spec.call_id.clone(),
                method: spec.method.clone(),
                url: spec.url.clone(),
            },
            Effect::Complete => EffectNote::Complete,
            Effect::Step { .. } => return None,
        })
    }
}

/// The step a turn names: its last `ctx.step`, else the message's `type` label for calls,
/// events and asks.
pub fn step_of(result: &TurnResult, message: &MessageNote) -> Option<String> {
    if let TurnResult::Done { effects, .. } = result {
        let named = effects.iter().rev().find_map(|e| match e {
            Effect::Step { label } => Some(cut(label, LABEL_LIMIT)),
            _ => None,
        });
        if named.is_some() {
            return named;
        }
    }
    match message.kind.as_str() {
        "call" | "event" | "ask" => message.label.clone(),
        _ => None,
    }
}

impl TurnRecord {
    /// The record of a turn: `state` is the size of the state it wrote, if known.
    pub fn new(
        at_ms: UnixMs,
        took_us: u64,
        env: &Envelope,
        result: &TurnResult,
        state: Option<u64>,
    ) -> Self {
        let message = MessageNote::of(env);
        let step = step_of(result, &message);
        let (effects, outcome, mark) = match result {
            TurnResult::Done { effects, .. } => (
                effects.iter().filter_map(EffectNote::of).collect(),
                Outcome::Ok,
                StateMark::NotKept,
            ),
            TurnResult::Refused { error, .. } => (
                Vec::new(),
                Outcome::Refused {
                    reason: error.clone(),
                },
                StateMark::Unchanged,
            ),
            TurnResult::DeadLetter { error, attempts } => (
                Vec::new(),
                Outcome::DeadLetter {
                    reason: error.clone(),
                    attempts: *attempts,
                },
                StateMark::Unchanged,
            ),
        };
        TurnRecord {
            at_ms,
            took_us,
            message,
            step,
            effects,
            outcome,
            state_bytes: state,
            state: mark,
            trace: None,
        }
    }
}

/// A directly-follows graph of process steps, mined from turn records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessMap {
    pub nodes: Vec<MapNode>,
    pub edges: Vec<MapEdge>,
    /// Actors whose history was read.
    pub actors: u64,
    /// `true` if more actors exist than were read.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapNode {
    pub id: String,
    pub label: String,
    /// Times an actor entered this step.
    pub count: u64,
    /// Live actors in this step now.
    pub waiting: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapEdge {
    pub from: String,
    pub to: String,
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

/// Builds a [`ProcessMap`] one actor at a time.
#[derive(Default)]
pub struct MapMiner {
    nodes: std::collections::BTreeMap<String, (u64, u64)>,
    edges: std::collections::BTreeMap<(String, String), Vec<u64>>,
    actors: u64,
}

impl MapMiner {
    /// Add one actor: its records in turn order (`(at_ms, step)`), and the step it is in
    /// now if it is live (waiting there).
    pub fn actor<'a>(
        &mut self,
        records: impl IntoIterator<Item = (UnixMs, Option<&'a str>)>,
        waiting_at: Option<&str>,
    ) {
        self.actors += 1;
        let mut last: Option<(&str, UnixMs)> = None;
        for (at, step) in records {
            let Some(step) = step else { continue };
            if last.is_some_and(|(s, _)| s == step) {
                continue;
            }
            self.nodes.entry(step.to_owned()).or_default().0 += 1;
            if let Some((from, since)) = last {
                self.edges
                    .entry((from.to_owned(), step.to_owned()))
                    .or_default()
                    .push(at.saturating_sub(since));
            }
            last = Some((step, at));
        }
        if let Some(step) = waiting_at {
            self.nodes.entry(step.to_owned()).or_default().1 += 1;
        }
    }

    pub fn finish(self, truncated: bool) -> ProcessMap {
        let pct = |sorted: &[u64], p: usize| sorted[((sorted.len() - 1) * p) / 100];
        ProcessMap {
            nodes: self
                .nodes
                .into_iter()
                .map(|(id, (count, waiting))| MapNode {
                    label: id.clone(),
                    id,
                    count,
                    waiting,
                })
                .collect(),
            edges: self
                .edges
                .into_iter()
                .map(|((from, to), mut gaps)| {
                    gaps.sort_unstable();
                    MapEdge {
                        from,
                        to,
                        count: gaps.len() as u64,
                        p50_ms: pct(&gaps, 50),
                        p95_ms: pct(&gaps, 95),
                    }
                })
                .collect(),
            actors: self.actors,
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(v: serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(&v).unwrap()
    }

    #[test]
    fn the_type_field_labels_a_message_and_names_the_step_by_default() {
        assert_eq!(
            type_label(&mp(serde_json::json!({"type": "register", "x": [1, 2]}))),
            Some("register".into())
        );
        assert_eq!(type_label(&mp(serde_json::json!({"x": 1}))), None);
        assert_eq!(type_label(&mp(serde_json::json!([1, 2]))), None);
        assert_eq!(type_label(&[]), None);
        let env = Envelope {
            kind: MessageKind::Event,
            body: mp(serde_json::json!({"type": "check_in"})),
            enqueued_ms: 0,
            trace: None,
        };
        let done = TurnResult::Done {
            state: vec![],
            effects: vec![],
        };
        let rec = TurnRecord::new(5, 7, &env, &done, Some(3));
        assert_eq!(rec.step.as_deref(), Some("check_in"));
        assert_eq!(rec.message.kind, "event");
        assert!(rec.message.complete());
        let named = TurnResult::Done {
            state: vec![],
            effects: vec![
                Effect::Step { label: "a".into() },
                Effect::Complete,
                Effect::Step {
                    label: "awaiting pass".into(),
                },
            ],
        };
        let rec = TurnRecord::new(5, 7, &env, &named, Some(3));
        assert_eq!(rec.step.as_deref(), Some("awaiting pass"));
        assert_eq!(rec.effects, vec![EffectNote::Complete]);
    }

    #[test]
    fn a_long_body_is_cut_and_says_so() {
        let env = Envelope {
            kind: MessageKind::Timer { name: "t".into() },
            body: vec![7; BODY_LIMIT * 3],
            enqueued_ms: 0,
            trace: None,
        };
        let rec = TurnRecord::new(
            0,
            0,
            &env,
            &TurnResult::Refused {
                error: "no".into(),
                refusal: crate::RefusalCode::Invalid,
            },
            None,
        );
        assert_eq!(rec.message.body.len(), BODY_LIMIT);
        assert!(!rec.message.complete());
        assert_eq!(rec.message.label.as_deref(), Some("t"));
        assert_eq!(rec.step, None, "a timer names no step by default");
        assert_eq!(rec.state, StateMark::Unchanged);
    }

    #[test]
    fn the_map_counts_entries_edges_gaps_and_who_waits_where() {
        let mut m = MapMiner::default();
        m.actor(
            [
                (0, Some("a")),
                (10, Some("a")),
                (30, Some("b")),
                (40, None),
                (100, Some("c")),
            ],
            None,
        );
        m.actor([(0, Some("a")), (50, Some("b"))], Some("b"));
        m.actor([(0, Some("a"))], Some("a"));
        let map = m.finish(false);
        let node = |id: &str| map.nodes.iter().find(|n| n.id == id).unwrap().clone();
        assert_eq!((node("a").count, node("a").waiting), (3, 1));
        assert_eq!((node("b").count, node("b").waiting), (2, 1));
        assert_eq!((node("c").count, node("c").waiting), (1, 0));
        let ab = map
            .edges
            .iter()
            .find(|e| e.from == "a" && e.to == "b")
            .unwrap();
        assert_eq!((ab.count, ab.p50_ms, ab.p95_ms), (2, 30, 30));
        let bc = map.edges.iter().find(|e| e.from == "b").unwrap();
        assert_eq!((bc.to.as_str(), bc.count, bc.p50_ms), ("c", 1, 70));
        assert_eq!(map.edges.len(), 2);
        assert_eq!(map.actors, 3);
    }
}

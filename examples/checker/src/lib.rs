//! `checker`: a process that records every message it applies, for the crash-loop tool
//! (`chaos/`, `scripts/chaos.sh`). Each message carries an id unique over the whole run;
//! the state counts how often each id was applied, so a message lost or applied twice
//! across crashes shows up when the tool reads the state back.
//!
//! Requests and events are `{"op": ...}`:
//! - `apply {id}` — records the id; a request is answered `{"id", "n"}`, where `n` is how
//!   many messages this actor had applied, so a second application would answer
//!   differently;
//! - `timer {id, after_ms}` — records the id and sets timer `t<id>` due `after_ms` later;
//!   answered `{"id", "n", "due"}`; the firing is recorded with its turn time;
//! - `ask {id, to}` — records the id and asks actor `to` (same module) `asked {id}`; the
//!   reply is recorded when it arrives;
//! - `asked {id}` — what `ask` sends: recorded, answered `{"id"}`.
//!
//! State keys are decimal strings so the state reads as JSON through the inspect API.
use std::collections::BTreeMap;

use dwell_sdk::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Checker {
    /// Messages applied by this actor so far, of every kind.
    n: u64,
    /// Per message id (`apply`, `timer`, `ask`): `[times applied, n when first applied]`.
    applied: BTreeMap<String, [u64; 2]>,
    /// Per timer (message id): `[times fired, due ms, turn time of the first firing,
    /// firings before the due time]`.
    fired: BTreeMap<String, [u64; 4]>,
    /// Per message id: how often another actor's `asked` was answered here.
    asked: BTreeMap<String, u64>,
    /// Per message id: how often the reply to this actor's ask arrived.
    answers: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Apply { id: u64 },
    Timer { id: u64, after_ms: u64 },
    Ask { id: u64, to: String },
    Asked { id: u64 },
}

#[derive(Serialize)]
struct Applied {
    id: u64,
    n: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Asked {
    op: String,
    id: u64,
}

impl Checker {
    /// Record `id` as applied; returns `n` at its first application.
    fn record(&mut self, id: u64) -> u64 {
        let n = self.n;
        let e = self.applied.entry(id.to_string()).or_insert([0, n]);
        e[0] += 1;
        n
    }

    /// Apply one op; the reply for a request.
    fn op(&mut self, ctx: &mut Context, op: Op) -> Result<Applied, Error> {
        self.n += 1;
        match op {
            Op::Apply { id } => Ok(Applied {
                id,
                n: self.record(id),
                due: None,
            }),
            Op::Timer { id, after_ms } => {
                let due = ctx.now_ms().saturating_add(after_ms);
                ctx.set_timer_at(&format!("t{id}"), due, &(id, due))?;
                Ok(Applied {
                    id,
                    n: self.record(id),
                    due: Some(due),
                })
            }
            Op::Ask { id, to } => {
                let me = ctx.me();
                let body = Asked {
                    op: "asked".into(),
                    id,
                };
                ctx.ask(&ActorRef::new(me.module, to), &body, &id.to_string())?;
                Ok(Applied {
                    id,
                    n: self.record(id),
                    due: None,
                })
            }
            Op::Asked { id } => {
                *self.asked.entry(id.to_string()).or_default() += 1;
                Ok(Applied {
                    id,
                    n: self.n,
                    due: None,
                })
            }
        }
    }
}

impl Actor for Checker {
    type Input = Op;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Op>) -> Result<(), Error> {
        match msg {
            Message::Request { reply, body } => {
                let out = self.op(ctx, body)?;
                ctx.reply(&reply, &out)
            }
            Message::Event(body) => self.op(ctx, body).map(|_| ()),
            Message::Timer(t) => {
                self.n += 1;
                let (id, due) = t.payload::<(u64, u64)>()?;
                let now = ctx.now_ms();
                let e = self.fired.entry(id.to_string()).or_insert([0, due, now, 0]);
                e[0] += 1;
                if now < due {
                    e[3] += 1;
                }
                Ok(())
            }
            Message::AskReply(a) => {
                self.n += 1;
                *self.answers.entry(a.correlation).or_default() += 1;
                Ok(())
            }
            Message::HttpResult(_) => Ok(()),
        }
    }
}

export_actor!(Checker);

//! `probe`: a process that does what its messages say, for exercising the runtime's
//! capabilities (timers, outbound HTTP, asks, completion) from tests and curl.
//!
//! Requests and events are `{"op": ...}`:
//! `set_timer {name, after_ms, payload?}`, `set_timers {count, after_ms}` (t0..tN-1),
//! `cancel_timer {name}`, `http {call_id, url, method?, body?, attempts?, timeout_ms?}`,
//! `ask {module, key, body, correlation}`, `echo {value}` (replies with the value),
//! `complete`, `get` (replies with the state). Requests are answered
//! `{"ok": true}` unless stated; a refused effect is answered `{"error": "..."}`.
//! Everything that comes back — fired timers, HTTP results, ask replies — is recorded
//! in the state.
use std::collections::BTreeMap;
use std::time::Duration;

use dwell_sdk::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Probe {
    /// Fired timers, in order: name, the turn's time, the due time from the payload.
    fired: Vec<Fired>,
    /// How often each timer name fired.
    fired_count: BTreeMap<String, u32>,
    http: Vec<HttpSeen>,
    asks: Vec<AskSeen>,
    events: u64,
}

#[derive(Serialize, Deserialize)]
struct Fired {
    name: String,
    at_ms: u64,
    due_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct HttpSeen {
    call_id: String,
    status: Option<u16>,
    error: Option<String>,
    body: String,
}

#[derive(Serialize, Deserialize)]
struct AskSeen {
    correlation: String,
    reply: Option<serde_json::Value>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    SetTimer {
        name: String,
        after_ms: u64,
    },
    SetTimers {
        count: u32,
        after_ms: u64,
    },
    CancelTimer {
        name: String,
    },
    Http {
        call_id: String,
        url: String,
        method: Option<String>,
        body: Option<serde_json::Value>,
        attempts: Option<u32>,
        timeout_ms: Option<u64>,
    },
    Ask {
        module: String,
        key: String,
        body: serde_json::Value,
        correlation: String,
    },
    Echo {
        value: serde_json::Value,
    },
    Complete,
    Get,
}

#[derive(Serialize)]
struct Ok_ {
    ok: bool,
}

#[derive(Serialize)]
struct Refused {
    error: String,
}

impl Probe {
    /// Perform one op; `Ok(Some(v))` is a reply other than `{"ok": true}`.
    fn op(&mut self, ctx: &mut Context, op: Op) -> Result<Option<serde_json::Value>, Error> {
        match op {
            Op::SetTimer { name, after_ms } => {
                let due = ctx.now_ms() + after_ms;
                ctx.set_timer_at(&name, due, &due)?;
            }
            Op::SetTimers { count, after_ms } => {
                let due = ctx.now_ms() + after_ms;
                for i in 0..count {
                    ctx.set_timer_at(&format!("t{i}"), due, &due)?;
                }
            }
            Op::CancelTimer { name } => ctx.cancel_timer(&name),
            Op::Http {
                call_id,
                url,
                method,
                body,
                attempts,
                timeout_ms,
            } => {
                let mut req = HttpRequest::new(method.as_deref().unwrap_or("POST"), url);
                if let Some(b) = body {
                    req = req.json(&b)?;
                }
                if let Some(n) = attempts {
                    req = req.max_attempts(n);
                }
                if let Some(ms) = timeout_ms {
                    req = req.timeout(Duration::from_millis(ms));
                }
                ctx.http_call(&call_id, req)?;
            }
            Op::Ask {
                module,
                key,
                body,
                correlation,
            } => ctx.ask(&ActorRef::new(module, key), &body, &correlation)?,
            Op::Echo { value } => return Ok(Some(value)),
            Op::Complete => ctx.complete(),
            Op::Get => {
                let bytes = dwell_sdk::encode(self)?;
                return dwell_sdk::decode(&bytes).map(Some);
            }
        }
        Ok(None)
    }
}

impl Actor for Probe {
    type Input = Op;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Op>) -> Result<(), Error> {
        match msg {
            Message::Request { reply, body } => match self.op(ctx, body) {
                Ok(Some(v)) => ctx.reply(&reply, &v),
                Ok(None) => ctx.reply(&reply, &Ok_ { ok: true }),
                Err(e) => ctx.reply(
                    &reply,
                    &Refused {
                        error: e.to_string(),
                    },
                ),
            },
            Message::Event(body) => {
                self.events += 1;
                self.op(ctx, body).map(|_| ())
            }
            Message::Timer(t) => {
                let due_ms = t.payload::<u64>().unwrap_or(0);
                *self.fired_count.entry(t.name.clone()).or_default() += 1;
                self.fired.push(Fired {
                    name: t.name,
                    at_ms: ctx.now_ms(),
                    due_ms,
                });
                Ok(())
            }
            Message::HttpResult(r) => {
                let seen = match r.outcome {
                    Ok(resp) => HttpSeen {
                        call_id: r.call_id,
                        status: Some(resp.status),
                        error: None,
                        body: resp.text(),
                    },
                    Err(e) => HttpSeen {
                        call_id: r.call_id,
                        status: None,
                        error: Some(e),
                        body: String::new(),
                    },
                };
                self.http.push(seen);
                Ok(())
            }
            Message::AskReply(a) => {
                let (reply, error) = match a.result::<serde_json::Value>() {
                    Ok(v) => (Some(v), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                self.asks.push(AskSeen {
                    correlation: a.correlation,
                    reply,
                    error,
                });
                Ok(())
            }
        }
    }
}

export_actor!(Probe);

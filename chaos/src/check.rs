//! The checker. After the last restart it waits until the server has applied everything
//! it accepted (the drain), reads every actor's state back from the inspect API and holds
//! it against the clients' ledger and the callback receiver's deliveries:
//! Long because each promise it checks is its own pass over the same ledger.
//!
//! - every acknowledged message applied exactly once, an unanswered one at most once, a
//!   refused one never, and nothing applied that was never sent;
//! - a `200` reply is the one the state says the first application gave;
//! - every timer of an applied timer message fired exactly once, never before its due time;
//! - every applied ask reached its target once and its reply came back once;
//! - every applied callback call was delivered (accepted by the receiver) at least once,
//!   all deliveries of one request carry one `webhook-id` and a valid signature, and one
//!   message never produced two requests;
//! - replaying an acknowledged message with its `Idempotency-Key` returns the first
//!   result and applies nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::Api;
use crate::load::{Injected, Kind, MODULE, Msg, Outcome};
use crate::receiver::Delivery;

/// What kind of promise was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Lost,
    AppliedTwice,
    RefusedButApplied,
    Phantom,
    WrongReply,
    Timer,
    Ask,
    Callback,
    CallbackSignature,
    CallbackWebhookId,
    Replay,
    NotDrained,
    DeadLetter,
    UnexpectedStatus,
    ServerExit,
    CleanRestart,
    Vacuous,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub class: Class,
    pub id: Option<u64>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{:?} (message {id}): {}", self.class, self.detail),
            None => write!(f, "{:?}: {}", self.class, self.detail),
        }
    }
}

pub fn violation(class: Class, id: Option<u64>, detail: impl Into<String>) -> Violation {
    Violation {
        class,
        id,
        detail: detail.into(),
    }
}

/// One actor as the inspect API shows it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: Value,
    pub mailbox: u64,
    pub timers: usize,
    pub dead_letters: Value,
}

impl Snapshot {
    pub fn n(&self) -> u64 {
        self.state["n"].as_u64().unwrap_or(0)
    }

    fn table(&self, name: &str) -> BTreeMap<u64, Vec<u64>> {
        let mut out = BTreeMap::new();
        if let Some(map) = self.state[name].as_object() {
            for (k, v) in map {
                let Ok(id) = k.parse::<u64>() else { continue };
                let nums = match v {
                    Value::Array(a) => a.iter().map(|x| x.as_u64().unwrap_or(0)).collect(),
                    other => vec![other.as_u64().unwrap_or(0)],
                };
                out.insert(id, nums);
            }
        }
        out
    }
}

pub type Snapshots = BTreeMap<String, Snapshot>;

/// Every actor the ledger mentions.
pub fn actors_of(ledger: &[Msg]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for m in ledger {
        set.insert(m.actor.clone());
        if let Some(t) = &m.target {
            set.insert(t.clone());
        }
    }
    set
}

/// Read every actor (absent ones are left out).
pub fn read_all(api: &Api, actors: &BTreeSet<String>) -> Result<Snapshots, String> {
    let mut out = Snapshots::new();
    for a in actors {
        if let Some(v) = api.get_json(&format!("/v1/actors/{MODULE}/{a}"))? {
            out.insert(
                a.clone(),
                Snapshot {
                    state: v["state"].clone(),
                    mailbox: v["mailbox_depth"].as_u64().unwrap_or(0),
                    timers: v["timers"].as_array().map_or(0, Vec::len),
                    dead_letters: v["dead_letters"].clone(),
                },
            );
        }
    }
    Ok(out)
}

/// Message ids of callback calls the states say were applied.
fn applied_callbacks(ledger: &HashMap<u64, &Msg>, snaps: &Snapshots) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for s in snaps.values() {
        for id in s.table("applied").keys() {
            if ledger.get(id).is_some_and(|m| m.kind == Kind::Callback) {
                out.insert(*id);
            }
        }
    }
    out
}

/// Wait until no actor has mail or pending timers and every applied callback call has
/// an accepted delivery, and the states stay put; then the states.
pub fn drain(
    api: &Api,
    ledger: &[Msg],
    deliveries: impl Fn() -> Vec<Delivery>,
    timeout: Duration,
) -> Result<(Snapshots, Vec<Violation>), String> {
    let by_id: HashMap<u64, &Msg> = ledger.iter().map(|m| (m.id, m)).collect();
    let actors = actors_of(ledger);
    let deadline = Instant::now() + timeout;
    loop {
        let snaps = read_all(api, &actors)?;
        let busy: Vec<String> = snaps
            .iter()
            .filter(|(_, s)| s.mailbox > 0 || s.timers > 0)
            .map(|(a, s)| format!("{a}: {} in mailbox, {} timers", s.mailbox, s.timers))
            .collect();
        let delivered: BTreeSet<u64> = deliveries()
            .iter()
            .filter(|d| d.accepted)
            .filter_map(Delivery::message_id)
            .collect();
        let undelivered: Vec<u64> = applied_callbacks(&by_id, &snaps)
            .difference(&delivered)
            .copied()
            .collect();
        if busy.is_empty() && undelivered.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
            let again = read_all(api, &actors)?;
            let same = again.len() == snaps.len()
                && again
                    .iter()
                    .all(|(a, s)| snaps.get(a).is_some_and(|t| t.n() == s.n()));
            if same {
                return Ok((again, Vec::new()));
            }
            continue;
        }
        if Instant::now() > deadline {
            let mut v: Vec<Violation> = busy
                .into_iter()
                .map(|b| violation(Class::NotDrained, None, b))
                .collect();
            v.extend(undelivered.into_iter().map(|id| {
                violation(
                    Class::Callback,
                    Some(id),
                    "applied, but no callback was accepted by the receiver",
                )
            }));
            return Ok((snaps, v));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Figures the check found, for the summary.
#[derive(Debug, Default, Clone)]
pub struct Found {
    pub applied: u64,
    pub timers_fired: u64,
    pub asks_answered: u64,
    pub callbacks_delivered: u64,
    pub deliveries: u64,
    pub redeliveries: u64,
    pub unknown_applied: u64,
    pub unknown_not_applied: u64,
}

/// Hold the states and deliveries against the ledger.
pub fn check(
    ledger: &[Msg],
    snaps: &Snapshots,
    deliveries: &[Delivery],
    api: &Api,
) -> (Found, Vec<Violation>) {
    let mut v = Vec::new();
    let mut found = Found::default();
    let by_id: HashMap<u64, &Msg> = ledger.iter().map(|m| (m.id, m)).collect();

    // Where and how often each id was applied, fired, asked, answered.
    let mut applied: HashMap<u64, (String, u64, u64)> = HashMap::new();
    let mut fired: HashMap<u64, (String, Vec<u64>)> = HashMap::new();
    let mut asked: HashMap<u64, (String, u64)> = HashMap::new();
    let mut answers: HashMap<u64, (String, u64)> = HashMap::new();
    for (actor, s) in snaps {
        if s.dead_letters.as_array().is_some_and(|d| !d.is_empty()) {
            v.push(violation(
                Class::DeadLetter,
                None,
                format!("{actor}: {}", s.dead_letters),
            ));
        }
        for (id, e) in s.table("applied") {
            let count = e.first().copied().unwrap_or(0);
            let n = e.get(1).copied().unwrap_or(0);
            if let Some((other, _, _)) = applied.insert(id, (actor.clone(), count, n)) {
                v.push(violation(
                    Class::AppliedTwice,
                    Some(id),
                    format!("applied by {other} and by {actor}"),
                ));
            }
        }
        for (id, e) in s.table("fired") {
            fired.insert(id, (actor.clone(), e));
        }
        for (id, e) in s.table("asked") {
            asked.insert(id, (actor.clone(), e.first().copied().unwrap_or(0)));
        }
        for (id, e) in s.table("answers") {
            answers.insert(id, (actor.clone(), e.first().copied().unwrap_or(0)));
        }
    }

    // Applied ids against the ledger.
    for (id, (actor, count, _)) in &applied {
        found.applied += 1;
        let Some(m) = by_id.get(id) else {
            v.push(violation(
                Class::Phantom,
                Some(*id),
                format!("{actor} applied a message that was never sent"),
            ));
            continue;
        };
        if &m.actor != actor {
            v.push(violation(
                Class::Phantom,
                Some(*id),
                format!("sent to {}, applied by {actor}", m.actor),
            ));
        }
        if *count > 1 {
            v.push(violation(
                Class::AppliedTwice,
                Some(*id),
                format!(
                    "{} (sent as {}) applied {count} times by {actor} ({:?}, {} attempts)",
                    m.kind.name(),
                    if m.as_call { "a call" } else { "an event" },
                    m.outcome,
                    m.attempts
                ),
            ));
        }
        if m.outcome == Outcome::Refused {
            v.push(violation(
                Class::RefusedButApplied,
                Some(*id),
                "every attempt was answered 503, yet it was applied",
            ));
        }
    }
    for m in ledger {
        let got = applied.get(&m.id);
        match m.outcome {
            Outcome::Acked if got.is_none() => v.push(violation(
                Class::Lost,
                Some(m.id),
                format!(
                    "{} to {} acknowledged ({} attempts, {} unanswered), never applied",
                    m.kind.name(),
                    m.actor,
                    m.attempts,
                    m.unanswered
                ),
            )),
            Outcome::Unknown if got.is_some() => found.unknown_applied += 1,
            Outcome::Unknown => found.unknown_not_applied += 1,
            _ => {}
        }
        for u in &m.unexpected {
            v.push(violation(
                Class::UnexpectedStatus,
                Some(m.id),
                format!("POST {}: {u}", m.path()),
            ));
        }
        let Some((_, _, first_n)) = got else { continue };
        // A 200 answers what the first application answered.
        if let Some(reply) = &m.reply {
            let ok = reply["id"].as_u64() == Some(m.id) && reply["n"].as_u64() == Some(*first_n);
            let due_ok = m.kind != Kind::Timer
                || reply["due"].as_u64() == fired.get(&m.id).and_then(|(_, e)| e.get(1).copied());
            if !ok || !due_ok {
                v.push(violation(
                    Class::WrongReply,
                    Some(m.id),
                    format!("replied {reply}, the state says n = {first_n}"),
                ));
            }
        }
    }

    // Timers: one firing per applied timer message, never early.
    for m in ledger.iter().filter(|m| m.kind == Kind::Timer) {
        let was_applied = applied.contains_key(&m.id);
        match (was_applied, fired.get(&m.id)) {
            (true, None) => v.push(violation(
                Class::Timer,
                Some(m.id),
                "the timer was set but never fired",
            )),
            (false, Some(_)) => v.push(violation(
                Class::Timer,
                Some(m.id),
                "a timer fired whose setting was never applied",
            )),
            (true, Some((actor, e))) => {
                found.timers_fired += 1;
                let (count, due, at, early) = (e[0], e[1], e[2], e.get(3).copied().unwrap_or(0));
                if actor != &m.actor {
                    v.push(violation(
                        Class::Timer,
                        Some(m.id),
                        format!("fired at {actor}"),
                    ));
                }
                if count != 1 {
                    v.push(violation(
                        Class::Timer,
                        Some(m.id),
                        format!("fired {count} times"),
                    ));
                }
                if early > 0 || at < due {
                    v.push(violation(
                        Class::Timer,
                        Some(m.id),
                        format!("fired early: due {due}, fired at {at} ({early} early firings)"),
                    ));
                }
            }
            (false, None) => {}
        }
    }
    for id in fired.keys() {
        if by_id.get(id).is_none_or(|m| m.kind != Kind::Timer) {
            v.push(violation(
                Class::Timer,
                Some(*id),
                "fired, but no timer message has this id",
            ));
        }
    }

    // Asks: the target answered once, the reply came back once.
    for m in ledger.iter().filter(|m| m.kind == Kind::Ask) {
        let target = m.target.clone().unwrap_or_default();
        let was_applied = applied.contains_key(&m.id);
        let a = asked.get(&m.id);
        let r = answers.get(&m.id);
        let ok = if was_applied {
            a.is_some_and(|(t, c)| *t == target && *c == 1)
                && r.is_some_and(|(t, c)| *t == m.actor && *c == 1)
        } else {
            a.is_none() && r.is_none()
        };
        if ok && was_applied {
            found.asks_answered += 1;
        }
        if !ok {
            v.push(violation(
                Class::Ask,
                Some(m.id),
                format!(
                    "{} asked {target}: applied {was_applied}, asked {a:?}, answers {r:?}",
                    m.actor
                ),
            ));
        }
    }
    for id in asked.keys().chain(answers.keys()) {
        if by_id.get(id).is_none_or(|m| m.kind != Kind::Ask) {
            v.push(violation(
                Class::Ask,
                Some(*id),
                "asked or answered, but no ask message has this id",
            ));
        }
    }

    // Callbacks.
    let mut by_request: BTreeMap<String, Vec<&Delivery>> = BTreeMap::new();
    let mut requests_of: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for d in deliveries {
        found.deliveries += 1;
        if !d.signature_ok {
            v.push(violation(
                Class::CallbackSignature,
                d.message_id(),
                format!(
                    "delivery to {} ({:?}) does not verify with the webhook secret",
                    d.path, d.webhook_id
                ),
            ));
        }
        let rid = d.request_id().unwrap_or_default().to_owned();
        if let Some(id) = d.message_id() {
            requests_of.entry(id).or_default().insert(rid.clone());
            if d.path != format!("/cb/{id}") {
                v.push(violation(
                    Class::Callback,
                    Some(id),
                    format!("delivered to {}", d.path),
                ));
            }
        } else {
            v.push(violation(
                Class::Callback,
                None,
                format!(
                    "a delivery to {} without a message id: {:?}",
                    d.path, d.body
                ),
            ));
        }
        by_request.entry(rid).or_default().push(d);
    }
    for (rid, ds) in &by_request {
        let ids: BTreeSet<&Option<String>> = ds.iter().map(|d| &d.webhook_id).collect();
        if ids.len() != 1 {
            v.push(violation(
                Class::CallbackWebhookId,
                ds[0].message_id(),
                format!("request {rid} was delivered under webhook-ids {ids:?}"),
            ));
        }
        if ds.iter().filter(|d| d.accepted).count() > 1 {
            found.redeliveries += 1;
        }
    }
    for (id, rids) in &requests_of {
        if rids.len() > 1 {
            v.push(violation(
                Class::Callback,
                Some(*id),
                format!("one message, callbacks of several requests: {rids:?}"),
            ));
        }
    }
    let mut of_message: HashMap<u64, Vec<&Delivery>> = HashMap::new();
    for d in deliveries {
        if let Some(id) = d.message_id() {
            of_message.entry(id).or_default().push(d);
        }
    }
    for m in ledger.iter().filter(|m| m.kind == Kind::Callback) {
        let Some((_, _, first_n)) = applied.get(&m.id) else {
            continue;
        };
        let mine = of_message.get(&m.id).cloned().unwrap_or_default();
        if !mine.iter().any(|d| d.accepted) {
            v.push(violation(
                Class::Callback,
                Some(m.id),
                format!("applied, never delivered ({} attempts seen)", mine.len()),
            ));
            continue;
        }
        found.callbacks_delivered += 1;
        for d in &mine {
            let reply = d.body.as_ref().map(|b| b["reply"].clone());
            if reply.as_ref().and_then(|r| r["n"].as_u64()) != Some(*first_n) {
                v.push(violation(
                    Class::Callback,
                    Some(m.id),
                    format!("delivered reply {reply:?}, the state says n = {first_n}"),
                ));
            }
        }
        if let Some(rid) = &m.request_id {
            if mine.iter().any(|d| d.request_id() != Some(rid.as_str())) {
                v.push(violation(
                    Class::Callback,
                    Some(m.id),
                    format!("acknowledged as request {rid}, delivered for another"),
                ));
            }
            match api.get_json(&format!("/v1/requests/{rid}")) {
                Ok(Some(r))
                    if r["status"] == "completed" && r["callback"]["status"] == "delivered" => {}
                Ok(r) => v.push(violation(
                    Class::Callback,
                    Some(m.id),
                    format!("request {rid} reads {r:?}"),
                )),
                Err(e) => v.push(violation(Class::Callback, Some(m.id), e)),
            }
        }
    }
    (found, v)
}

/// The reply the state says the first application of `m` gave.
fn expected_reply(m: &Msg, first_n: u64, snaps: &Snapshots) -> Value {
    let mut r = json!({"id": m.id, "n": first_n});
    if m.kind == Kind::Timer {
        let due = snaps
            .get(&m.actor)
            .and_then(|s| s.table("fired").get(&m.id).and_then(|e| e.get(1).copied()));
        r["due"] = json!(due);
    }
    r
}

/// Send acknowledged messages again with their `Idempotency-Key` (up to `limit`, spread
/// over the ledger): a call must answer 200 with the first reply and the same request
/// id, an event 202 `duplicate: true`; afterwards no actor may have applied anything.
pub fn replay(api: &Api, ledger: &[Msg], snaps: &Snapshots, limit: usize) -> (u64, Vec<Violation>) {
    let mut v = Vec::new();
    let applied: HashMap<u64, u64> = snaps
        .values()
        .flat_map(|s| {
            s.table("applied")
                .into_iter()
                .map(|(id, e)| (id, e.get(1).copied().unwrap_or(0)))
        })
        .collect();
    let candidates: Vec<&Msg> = ledger
        .iter()
        .filter(|m| {
            m.outcome == Outcome::Acked && m.injected.is_none() && m.idempotency_key().is_some()
        })
        .collect();
    let step = (candidates.len() / limit.max(1)).max(1);
    let mut replayed = 0;
    for m in candidates.iter().step_by(step).take(limit) {
        let Some(first_n) = applied.get(&m.id) else {
            continue; // reported as lost already
        };
        let mut again = (*m).clone();
        // Wait for the result rather than get 202 again.
        again.headers.retain(|(k, _)| k != "prefer");
        if m.as_call {
            again.headers.push(("prefer".into(), "wait=10".into()));
        }
        let answer = match again.send(api) {
            Ok(a) => a,
            Err(e) => {
                v.push(violation(Class::Replay, Some(m.id), e));
                continue;
            }
        };
        replayed += 1;
        let body = answer.json().unwrap_or(Value::Null);
        if m.as_call {
            let want = expected_reply(m, *first_n, snaps);
            let same_request = match (&m.request_id, &answer.request_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if answer.status != 200 || body != want || !same_request {
                v.push(violation(
                    Class::Replay,
                    Some(m.id),
                    format!(
                        "replay answered {} {body} (request {:?}); first: {want} (request {:?})",
                        answer.status, answer.request_id, m.request_id
                    ),
                ));
            }
        } else if answer.status != 202 || body["duplicate"] != json!(true) {
            v.push(violation(
                Class::Replay,
                Some(m.id),
                format!("event replay answered {} {body}", answer.status),
            ));
        }
    }
    (replayed, v)
}

/// The states must not have moved (nothing applied by replays; nothing lost or redone by
/// a clean restart).
pub fn unchanged(
    before: &Snapshots,
    after: &Snapshots,
    class: Class,
    what: &str,
) -> Vec<Violation> {
    let mut v = Vec::new();
    for (a, s) in before {
        match after.get(a) {
            Some(t) if t.state == s.state => {}
            Some(t) => v.push(violation(
                class,
                None,
                format!("{what}: actor {a} changed (n {} → {})", s.n(), t.n()),
            )),
            None => v.push(violation(class, None, format!("{what}: actor {a} is gone"))),
        }
    }
    v
}

/// Whether a violation is one the run put in on purpose.
pub fn is_injected(v: &Violation, ledger: &HashMap<u64, &Msg>, forged: &BTreeSet<u64>) -> bool {
    let Some(id) = v.id else { return false };
    match v.class {
        Class::AppliedTwice => ledger
            .get(&id)
            .is_some_and(|m| m.injected == Some(Injected::Double)),
        Class::Lost => ledger
            .get(&id)
            .is_some_and(|m| m.injected == Some(Injected::Lost)),
        Class::CallbackSignature | Class::CallbackWebhookId | Class::Callback => {
            forged.contains(&id)
        }
        _ => false,
    }
}

//! The load: client threads that send calls, events, timer and ask requests and calls
//! with a `Callback-Url` to whichever server incarnation is up, and the ledger of every
//! message they sent and what the server answered (acknowledged, no answer, refused).
//! A message that got no answer is, half the time, sent again later with the same
//! `Idempotency-Key` and body, as a careful client would.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Answer, Api};

/// The module name the checker guest is deployed under.
pub const MODULE: &str = "checker";

/// What kind of traffic a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A call, `Idempotency-Key`, waits for the reply.
    Call,
    /// An event, `Idempotency-Key`.
    Event,
    /// A call or event that makes the guest set a timer.
    Timer,
    /// A call or event that makes the guest ask another actor.
    Ask,
    /// A call with a `Callback-Url` (`Prefer: respond-async` or a short wait).
    Callback,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Call,
        Kind::Event,
        Kind::Timer,
        Kind::Ask,
        Kind::Callback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Event => "event",
            Kind::Timer => "timer",
            Kind::Ask => "ask",
            Kind::Callback => "callback",
        }
    }
}

/// What the server said about a message, over all its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 or 202: durable, must be applied exactly once.
    Acked,
    /// Some attempt got no answer and none was acknowledged: applied at most once.
    Unknown,
    /// Every attempt was refused (503) before anything was accepted: never applied.
    Refused,
}

/// A fault the tool puts in on purpose to prove that the checker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// An event sent twice without `Idempotency-Key`, recorded as one.
    Double,
    /// Recorded as acknowledged, never sent.
    Lost,
}

/// One message and everything the clients learnt about it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub id: u64,
    pub kind: Kind,
    /// Sent as a call (`POST /v1/actors/…`) rather than an event (`…/events`).
    pub as_call: bool,
    pub actor: String,
    /// The actor asked, for [`Kind::Ask`].
    pub target: Option<String>,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub outcome: Outcome,
    pub attempts: u32,
    /// Attempts that got no answer.
    pub unanswered: u32,
    /// Whether the client sends it again after an attempt without answer.
    pub retry: bool,
    /// The reply of a `200`.
    pub reply: Option<Value>,
    /// From `dwell-request-id` or a `202`'s body.
    pub request_id: Option<String>,
    pub injected: Option<Injected>,
    /// Statuses other than 200/202/503 (the server misbehaved).
    pub unexpected: Vec<String>,
}

impl Msg {
    pub fn path(&self) -> String {
        if self.as_call {
            format!("/v1/actors/{MODULE}/{}", self.actor)
        } else {
            format!("/v1/actors/{MODULE}/{}/events", self.actor)
        }
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map(|(_, v)| v.as_str())
    }

    /// Record one attempt's answer.
    pub fn record(&mut self, result: &Result<Answer, String>) {
        self.attempts += 1;
        match result {
            Ok(a) if a.status == 200 || a.status == 202 => {
                self.outcome = Outcome::Acked;
                if a.request_id.is_some() {
                    self.request_id.clone_from(&a.request_id);
                }
                let body = a.json();
                if a.status == 200 && self.as_call {
                    self.reply = body;
                } else if let Some(rid) = body
                    .as_ref()
                    .and_then(|b| b.get("request_id"))
                    .and_then(Value::as_str)
                {
                    self.request_id = Some(rid.to_owned());
                }
            }
            Ok(a) if a.status == 503 => {
                if self.unanswered == 0 && self.outcome != Outcome::Acked {
                    self.outcome = Outcome::Refused;
                }
            }
            Ok(a) => {
                self.unexpected.push(format!("{} {}", a.status, a.text()));
                if self.outcome != Outcome::Acked {
                    self.outcome = Outcome::Unknown;
                }
            }
            Err(_) => {
                self.unanswered += 1;
                if self.outcome != Outcome::Acked {
                    self.outcome = Outcome::Unknown;
                }
            }
        }
    }

    /// Send one attempt.
    pub fn send(&self, api: &Api) -> Result<Answer, String> {
        api.send(
            "POST",
            &self.path(),
            &self.headers,
            Some(self.body.as_bytes()),
        )
    }
}

/// SplitMix64: a small seeded generator, so a run's choices follow from `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the clients share with the main thread: the serving incarnation, if any.
pub struct Shared {
    /// (generation, base URL while serving).
    up: Mutex<(u64, Option<String>)>,
    changed: Condvar,
    pub stop: AtomicBool,
    next_id: AtomicU64,
    pub key: String,
    pub seed: u64,
    pub actors: u64,
    pub callback_addr: String,
    pub inject_double: bool,
    /// Which set of actors new messages go to (moved on every few kills, so that no
    /// actor's state grows without bound over a long run).
    pub era: AtomicU64,
    /// Incarnations that died while some client waited for an answer.
    failed: Mutex<BTreeSet<u64>>,
}

impl Shared {
    pub fn new(
        key: String,
        seed: u64,
        actors: u64,
        callback_addr: String,
        inject_double: bool,
    ) -> Shared {
        Shared {
            up: Mutex::new((0, None)),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            key,
            seed,
            actors,
            callback_addr,
            inject_double,
            era: AtomicU64::new(0),
            failed: Mutex::new(BTreeSet::new()),
        }
    }

    /// How many incarnations died with a message of some client in flight.
    pub fn kills_in_flight(&self) -> usize {
        self.failed.lock().map_or(0, |f| f.len())
    }

    /// A fresh message id, unique over the run.
    pub fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new incarnation is serving at `base`.
    pub fn serving(&self, base: &str) {
        if let Ok(mut up) = self.up.lock() {
            up.0 += 1;
            up.1 = Some(base.to_owned());
        }
        self.changed.notify_all();
    }

    /// The incarnation is gone (about to be killed, or killed).
    pub fn down(&self) {
        if let Ok(mut up) = self.up.lock() {
            up.1 = None;
        }
    }

    pub fn finish(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Wait for an incarnation newer than `after` to serve; `None` when stopping.
    fn wait_up(&self, after: u64) -> Option<(u64, String)> {
        let mut up = self.up.lock().ok()?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            if up.0 > after
                && let Some(base) = &up.1
            {
                return Some((up.0, base.clone()));
            }
            up = self
                .changed
                .wait_timeout(up, Duration::from_millis(200))
                .ok()?
                .0;
        }
    }

    /// A new message of a random kind.
    pub fn new_msg(&self, rng: &mut Rng) -> Msg {
        let id = self.id();
        let era = self.era.load(Ordering::Relaxed);
        let ai = rng.below(self.actors);
        let actor = format!("e{era}a{ai}");
        let roll = rng.below(100);
        let kind = match roll {
            0..30 => Kind::Call,
            30..60 => Kind::Event,
            60..75 => Kind::Timer,
            75..85 => Kind::Ask,
            _ => Kind::Callback,
        };
        let as_call = match kind {
            Kind::Call | Kind::Callback => true,
            Kind::Event => false,
            Kind::Timer | Kind::Ask => rng.chance(50),
        };
        let mut target = None;
        let body = match kind {
            Kind::Call | Kind::Event | Kind::Callback => json!({"op": "apply", "id": id}),
            Kind::Timer => json!({"op": "timer", "id": id, "after_ms": rng.below(2500)}),
            Kind::Ask => {
                // Another actor than the asker.
                let to = format!(
                    "e{era}a{}",
                    (ai + 1 + rng.below(self.actors - 1)) % self.actors
                );
                target = Some(to.clone());
                json!({"op": "ask", "id": id, "to": to})
            }
        };
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "idempotency-key".to_owned(),
                format!("chaos-{}-{id}", self.seed),
            ),
        ];
        if kind == Kind::Callback {
            headers.push((
                "callback-url".to_owned(),
                format!("http://{}/cb/{id}", self.callback_addr),
            ));
        }
        if as_call {
            let prefer = match rng.below(10) {
                0..2 => "respond-async",
                2..4 => "wait=1",
                _ => "wait=10",
            };
            headers.push(("prefer".to_owned(), prefer.to_owned()));
        }
        Msg {
            id,
            kind,
            as_call,
            actor,
            target,
            body: body.to_string(),
            headers,
            outcome: Outcome::Unknown,
            attempts: 0,
            unanswered: 0,
            retry: rng.chance(50),
            reply: None,
            request_id: None,
            injected: None,
            unexpected: Vec::new(),
        }
    }

    /// An event without `Idempotency-Key`, to be sent twice (`--inject double`).
    fn double_msg(&self, rng: &mut Rng) -> Msg {
        let mut m = self.new_msg(rng);
        m.kind = Kind::Event;
        m.as_call = false;
        m.target = None;
        m.body = json!({"op": "apply", "id": m.id}).to_string();
        m.headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        m.retry = false;
        m.injected = Some(Injected::Double);
        m
    }
}

/// One client thread: sends messages one at a time until told to stop; returns its
/// ledger.
pub fn client(index: u64, shared: Arc<Shared>) -> Vec<Msg> {
    let mut rng = Rng::new(shared.seed ^ (index + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut ledger: Vec<Msg> = Vec::new();
    let mut to_retry: Vec<usize> = Vec::new();
    let mut failed_gen = 0;
    let mut doubles = if shared.inject_double && index == 0 {
        4
    } else {
        0
    };
    while let Some((generation, base)) = shared.wait_up(failed_gen) {
        let api = Api::new(&base, &shared.key);
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let i = match to_retry.pop() {
                Some(i) if rng.chance(50) => i,
                other => {
                    if let Some(i) = other {
                        to_retry.push(i);
                    }
                    ledger.push(if doubles > 0 && rng.chance(10) {
                        doubles -= 1;
                        shared.double_msg(&mut rng)
                    } else {
                        shared.new_msg(&mut rng)
                    });
                    ledger.len() - 1
                }
            };
            let msg = &mut ledger[i];
            let mut result = msg.send(&api);
            if msg.injected == Some(Injected::Double) && matches!(&result, Ok(a) if a.status == 202)
            {
                // The duplicate: without a key the server cannot tell it from a new event.
                result = msg.send(&api);
            }
            msg.record(&result);
            match &result {
                Ok(a) if a.status == 503 => {
                    to_retry.push(i);
                    let wait = a.retry_after.unwrap_or(1).min(1);
                    std::thread::sleep(Duration::from_millis(200 * wait + 50));
                }
                Ok(_) => {}
                Err(_) => {
                    if msg.retry && msg.idempotency_key().is_some() {
                        to_retry.push(i);
                    }
                    // The server is gone: wait for the next one.
                    if let Ok(mut f) = shared.failed.lock() {
                        f.insert(generation);
                    }
                    failed_gen = generation;
                    break;
                }
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    ledger
}

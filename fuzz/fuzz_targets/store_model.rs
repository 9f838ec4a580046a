//! The store's mailbox, timer and idempotency rules against a model.
//! Long because the model is a second, independent implementation of the rules it checks.
//!
//! Each input is a sequence of operations on a real [`Store`] (a fresh redb file, on
//! tmpfs when there is one) and on a plain in-memory model built from `BTreeMap`s: enqueue
//! (with or without an `Idempotency-Key`), commit a runner's batch (mailbox turns and
//! inline turns, whose outcomes set and cancel timers, complete the actor, reply, send,
//! dead-letter or refuse), hand a due timer to a runner, fire due timers or a given list,
//! purge idempotency keys, delete an actor, and let time pass. After every operation
//! everything observable is compared with the model: the answers, every actor's meta,
//! mailbox (in order), state, timers and dead letters, the timer schedule, the actors
//! with mail, request statuses and actor counts.
//!
//! Beyond the comparison, the harness checks directly that:
//! - the state of an actor is the list of the messages its applied turns handled, so a
//!   message applied twice, lost or out of order shows (exactly once, in mailbox order);
//! - a timer message appears once, and never before its due time;
//! - a repeated key with the same fingerprint is a duplicate of the first message, with
//!   another fingerprint or actor a conflict, and neither enqueues anything.
//!
//! The model states the rules independently of the writer's code, with two
//! deliberately mirrored details: purge forgets keys that expired strictly before `now`
//! (an enqueue treats a key as expired at `expires <= now`), and an inline turn that
//! reuses an expired key leaves the old expiry entry behind for purge to count.

#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use dwell::domain::history::Retention;
use dwell::domain::{
    ActorId, ActorStatus, Clock, Effect, Envelope, MessageKind, RefusalCode, ReplyTo, RequestId,
    RequestStatus, TenantId, TurnResult, UnixMs,
};
use dwell::store::{
    AdminOp, CommittedTurn, EnqueueAck, EnqueueRequest, Expect, Idempotency, InlineTurn,
    NewRequest, Notice, PostCommit, Store, TimerKey, WriterConfig,
};
use libfuzzer_sys::fuzz_target;
use tokio::sync::oneshot;

/// The history every commit keeps (the model does not look at it; the writes happen).
const HISTORY: Retention = Retention {
    turns: 3,
    states: 2,
    age_ms: 0,
};

const TENANTS: [&str; 2] = ["default", "t2"];
/// `(tenant, module, key)`; module `ghost` is never deployed.
const ACTORS: [(usize, &str, &str); 5] = [
    (0, "m", "a"),
    (0, "m", "b"),
    (0, "m", "c"),
    (1, "m", "a"),
    (0, "ghost", "a"),
];
const DIGEST: &str = "d1";
const MAX_ACTORS: u64 = 2;
const TIMER_NAMES: [&str; 4] = ["a", "b", "c", "d"];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const MAX_OPS: usize = 48;

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    /// `Store::enqueue`, as ingress does on the durable path.
    Enqueue {
        actor: u8,
        request: bool,
        idem: Option<Idem>,
    },
    /// A runner's batch: it reads the mailbox and commits turns for (up to) the first
    /// messages, optionally followed by inline turns run on the state they leave.
    Batch {
        actor: u8,
        turns: Vec<TurnSpec>,
        inline: Vec<InlineSpec>,
        /// Break what the runner believes about the actor (0: nothing).
        stale: u8,
        /// Drop the first mailbox turn (the others are then not the head either).
        skip_first: bool,
        /// Submit the very same mailbox turns again afterwards (a retried commit).
        replay: bool,
    },
    /// The timer worker hands a due timer to a runner, which commits it inline.
    InlineTimer {
        timer: u8,
        wrong_due: bool,
        stale: u8,
        result: TurnSpec,
    },
    FireTimers {
        max: u8,
    },
    FireThese {
        picks: Vec<(u8, bool)>,
    },
    Purge {
        max: u8,
    },
    Advance {
        ms: u8,
    },
    Delete {
        actor: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Idem {
    key: u8,
    fingerprint: u8,
    ttl: u8,
}

#[derive(Arbitrary, Debug, Clone)]
struct InlineSpec {
    request: bool,
    idem: Option<Idem>,
    /// `None`: the runner could not run it (it trapped); it is only enqueued.
    result: Option<TurnSpec>,
}

#[derive(Arbitrary, Debug, Clone)]
struct TurnSpec {
    outcome: Outcome,
    effects: Vec<EffectSpec>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Outcome {
    Done,
    DeadLetter,
    Refused,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum EffectSpec {
    SetTimer {
        name: u8,
        delay: u8,
    },
    CancelTimer {
        name: u8,
    },
    Complete,
    /// Reply to the message's own request, if it is one.
    ReplyOwn,
    /// Reply to some request (maybe settled, maybe another tenant's, maybe unknown).
    Reply {
        request: u8,
        ok: bool,
    },
    /// Send an event to an actor of the same tenant (maybe itself).
    Send {
        to: u8,
    },
}

// ---------------------------------------------------------------------------------------
// The model

#[derive(Debug, Clone)]
struct MActor {
    created_ms: UnixMs,
    head: u64,
    turns: u64,
    dead_letters: u64,
    status: ActorStatus,
    /// name → (due, payload)
    timers: BTreeMap<String, (UnixMs, Vec<u8>)>,
    mailbox: BTreeMap<u64, Envelope>,
    state: Option<Vec<u8>>,
    /// seq → (envelope, error)
    dead: BTreeMap<u64, (Envelope, String)>,
}

#[derive(Debug, Clone)]
struct IdemRec {
    actor: usize,
    request: Option<u128>,
    seq: u64,
    expires: UnixMs,
    fingerprint: [u8; 32],
}

#[derive(Debug, Default)]
struct Model {
    now: UnixMs,
    actors: [Option<MActor>; ACTORS.len()],
    tenant_actors: [u64; TENANTS.len()],
    /// id → (actor, status)
    requests: BTreeMap<u128, (usize, RequestStatus)>,
    idem: BTreeMap<(usize, String), IdemRec>,
    /// (expires, tenant name, key), as purge walks them.
    idem_expiry: BTreeSet<(UnixMs, String, String)>,
}

/// An answer to a request: the reply or the error, and (for a refusal) its class.
type Answered = (ReplyTo, Result<Vec<u8>, String>, Option<RefusalCode>);

/// What a batch's turns leave to do after the bookkeeping (see the writer).
#[derive(Default)]
struct Out {
    /// The state the applied turns leave: the one before them plus every message a
    /// successful turn handled, in order. Computed here, not taken from the outcomes.
    running: Vec<u8>,
    /// Whether an applied turn carried a snapshot (then the state is `running`).
    carried: bool,
    replies: Vec<Answered>,
    outgoing: Vec<(usize, Envelope)>,
}

fn actor_id(i: usize) -> ActorId {
    let (t, m, k) = ACTORS[i];
    ActorId::new(TenantId(TENANTS[t].to_owned()), m, k)
}

fn storage_key(i: usize) -> String {
    actor_id(i).storage_key()
}

fn actor_of_key(key: &str) -> usize {
    (0..ACTORS.len())
        .find(|&i| storage_key(i) == key)
        .expect("a known actor")
}

impl Model {
    fn actor(&mut self, i: usize) -> &mut MActor {
        self.actors[i].as_mut().expect("the actor exists")
    }

    /// A new actor's meta, or why there is none (unknown module, actor quota).
    fn new_actor(&mut self, i: usize) -> Result<MActor, EnqueueAck> {
        let (t, module, _) = ACTORS[i];
        if module != "m" {
            return Err(EnqueueAck::UnknownModule);
        }
        if self.tenant_actors[t] >= MAX_ACTORS {
            return Err(EnqueueAck::ActorQuota(MAX_ACTORS));
        }
        self.tenant_actors[t] += 1;
        Ok(MActor {
            created_ms: self.now,
            head: 0,
            turns: 0,
            dead_letters: 0,
            status: ActorStatus::Active,
            timers: BTreeMap::new(),
            mailbox: BTreeMap::new(),
            state: None,
            dead: BTreeMap::new(),
        })
    }

    /// Append to a mailbox, creating the actor on its first message.
    fn enqueue(&mut self, i: usize, env: Envelope) -> EnqueueAck {
        if self.actors[i].is_none() {
            match self.new_actor(i) {
                Ok(a) => self.actors[i] = Some(a),
                Err(refused) => return refused,
            }
        }
        let a = self.actor(i);
        if a.status == ActorStatus::Completed {
            return EnqueueAck::ActorCompleted;
        }
        let seq = a.mailbox.keys().next_back().map_or(a.head, |l| l + 1);
        a.mailbox.insert(seq, env);
        EnqueueAck::Accepted { seq }
    }

    /// An enqueue with its request record and idempotency key.
    fn enqueue_request(
        &mut self,
        i: usize,
        env: Envelope,
        request: Option<u128>,
        idem: Option<(String, UnixMs, [u8; 32])>,
    ) -> EnqueueAck {
        let tenant = ACTORS[i].0;
        if let Some((key, _, fp)) = &idem
            && let Some(rec) = self.idem.get(&(tenant, key.clone())).cloned()
        {
            if rec.expires > self.now {
                if rec.actor != i || rec.fingerprint != *fp {
                    return EnqueueAck::KeyConflict;
                }
                return EnqueueAck::Duplicate {
                    request: rec.request.map(RequestId),
                    seq: rec.seq,
                };
            }
            self.idem.remove(&(tenant, key.clone()));
            self.idem_expiry
                .remove(&(rec.expires, TENANTS[tenant].to_owned(), key.clone()));
        }
        let ack = self.enqueue(i, env);
        if let EnqueueAck::Accepted { seq } = ack {
            if let Some((key, expires, fp)) = idem {
                self.put_idem(i, key, expires, fp, request, seq);
            }
            if let Some(id) = request {
                self.requests.insert(id, (i, RequestStatus::Pending));
            }
        }
        ack
    }

    fn put_idem(
        &mut self,
        i: usize,
        key: String,
        expires: UnixMs,
        fingerprint: [u8; 32],
        request: Option<u128>,
        seq: u64,
    ) {
        let tenant = ACTORS[i].0;
        // One expiry entry per key: a replaced (expired) record's goes with it.
        if let Some(old) = self.idem.get(&(tenant, key.clone())) {
            self.idem_expiry
                .remove(&(old.expires, TENANTS[tenant].to_owned(), key.clone()));
        }
        self.idem_expiry
            .insert((expires, TENANTS[tenant].to_owned(), key.clone()));
        self.idem.insert(
            (tenant, key),
            IdemRec {
                actor: i,
                request,
                seq,
                expires,
                fingerprint,
            },
        );
    }

    /// Settle a pending request of the replier's tenant (first answer wins).
    fn settle(&mut self, tenant: usize, id: u128, status: RequestStatus) {
        if let Some((owner, current)) = self.requests.get_mut(&id)
            && current.is_pending()
            && ACTORS[*owner].0 == tenant
        {
            *current = status;
        }
    }

    fn set_timer(&mut self, i: usize, name: &str, due: UnixMs, payload: Vec<u8>) {
        let a = self.actor(i);
        if a.status == ActorStatus::Completed {
            return; // a completed process has no timers
        }
        // No limit here: the runner decides the per-actor timer limit in the turn, and
        // the writer stores every timer a committed turn set.
        a.timers.insert(name.to_owned(), (due, payload));
    }

    /// Fire a timer if it is still pending as `(due, actor, name)`; `true` if it was.
    fn fire_one(&mut self, due: UnixMs, i: usize, name: &str) -> bool {
        let Some(a) = self.actors[i].as_mut() else {
            return false;
        };
        if a.timers.get(name).map(|t| t.0) != Some(due) {
            return false;
        }
        let (_, payload) = a.timers.remove(name).expect("pending");
        let env = Envelope {
            kind: MessageKind::Timer {
                name: name.to_owned(),
            },
            body: payload,
            enqueued_ms: self.now,
            trace: None,
        };
        self.enqueue(i, env);
        true
    }

    /// Every pending timer, in the schedule's order.
    fn schedule(&self) -> Vec<(TimerKey, Vec<u8>)> {
        let mut out: Vec<(TimerKey, Vec<u8>)> = Vec::new();
        for (i, a) in self.actors.iter().enumerate() {
            let Some(a) = a else { continue };
            for (name, (due, payload)) in &a.timers {
                out.push(((*due, storage_key(i), name.clone()), payload.clone()));
            }
        }
        out.sort();
        out
    }

    /// Dequeue bookkeeping and effects of one turn (see the writer's `apply_turn`).
    fn apply_turn(&mut self, i: usize, seq: u64, env: Envelope, result: TurnResult, out: &mut Out) {
        let now = self.now;
        let a = self.actor(i);
        a.head = seq + 1;
        match result {
            TurnResult::Done { state, effects } => {
                a.turns += 1;
                out.running.extend_from_slice(&env.body);
                out.carried |= !state.is_empty();
                for effect in effects {
                    match effect {
                        Effect::Reply {
                            to,
                            outcome,
                            refusal,
                        } => out.replies.push((to, outcome, refusal)),
                        Effect::Send { to, body } => out.outgoing.push((
                            actor_of_key(&to.storage_key()),
                            Envelope {
                                kind: MessageKind::Event,
                                body,
                                enqueued_ms: now,
                                trace: None,
                            },
                        )),
                        Effect::Complete => {
                            let a = self.actor(i);
                            a.status = ActorStatus::Completed;
                            a.timers.clear();
                        }
                        Effect::SetTimer {
                            name,
                            due_ms,
                            payload,
                        } => self.set_timer(i, &name, due_ms, payload),
                        Effect::CancelTimer { name } => {
                            self.actor(i).timers.remove(&name);
                        }
                        other => unreachable!("not generated: {other:?}"),
                    }
                }
            }
            TurnResult::Refused { error, refusal } => match answer_to(&env) {
                Some(to) => out.replies.push((to, Err(error), Some(refusal))),
                None => {
                    let error = format!("refused by the actor ({}): {error}", refusal.as_str());
                    a.dead_letters += 1;
                    a.dead.insert(seq, (env, error));
                }
            },
            TurnResult::DeadLetter { error, .. } => {
                if let Some(to) = answer_to(&env) {
                    out.replies.push((to, Err(error.clone()), None));
                }
                a.dead_letters += 1;
                a.dead.insert(seq, (env, error));
            }
        }
    }

    /// A runner's batch (see the writer's `commit_turns`). `None`: the writer refuses it
    /// (turns for an actor that does not exist).
    fn commit(
        &mut self,
        i: usize,
        turns: &[(u64, TurnResult)],
        inline: &[ModelInline],
        expect: &Expect,
    ) -> Option<(Vec<EnqueueAck>, bool)> {
        let tenant = ACTORS[i].0;
        let existed = self.actors[i].is_some();
        if !existed {
            if !turns.is_empty() {
                return None;
            }
            if inline.is_empty() {
                return Some((Vec::new(), true));
            }
            match self.new_actor(i) {
                Ok(a) => self.actors[i] = Some(a),
                Err(refused) => return Some((vec![refused; inline.len()], false)),
            }
        }
        let mut out = Out {
            running: (self.actor(i).state.clone()).unwrap_or_else(|| b"S;".to_vec()),
            ..Out::default()
        };
        // Mailbox turns run on another version than the actor is on now are ignored (the
        // store sees the runner's expectation only with inline turns).
        let on_version = inline.is_empty() || expect.digest == DIGEST;
        for (seq, result) in turns {
            if !on_version {
                break;
            }
            if *seq != self.actor(i).head {
                continue;
            }
            let Some(env) = self.actor(i).mailbox.remove(seq) else {
                continue;
            };
            self.apply_turn(i, *seq, env, result.clone(), &mut out);
        }

        let run = inline
            .iter()
            .position(|it| it.result.is_none())
            .unwrap_or(inline.len());
        let (ran, not_run) = inline.split_at(run);
        let mut fallback: Vec<&ModelInline> = not_run.iter().collect();
        let mut acks: Vec<Option<EnqueueAck>> = vec![None; inline.len()];
        let mut applied_all = fallback.is_empty();
        if !ran.is_empty() {
            let a = self.actors[i].as_ref().expect("exists");
            let seen = expect.head_seq == a.head
                && expect.digest == DIGEST
                && match expect.created_ms {
                    Some(c) => existed && c == a.created_ms,
                    None => !existed,
                };
            let mut keys = BTreeSet::new();
            let fresh = ran.iter().all(|it| {
                let timer_ok = match it.timer {
                    Some((due, ref name)) => a.timers.get(name).map(|t| t.0) == Some(due),
                    None => true,
                };
                let key_ok = match &it.idem {
                    None => true,
                    Some((key, _, _)) => {
                        keys.insert(key.clone())
                            && self
                                .idem
                                .get(&(tenant, key.clone()))
                                .is_none_or(|r| r.expires <= self.now)
                    }
                };
                timer_ok && key_ok
            });
            let applies = seen && a.status == ActorStatus::Active && a.mailbox.is_empty() && fresh;
            if applies {
                for (n, it) in ran.iter().enumerate() {
                    if let Some((due, name)) = &it.timer
                        && self.actor(i).timers.get(name).map(|t| t.0) == Some(*due)
                    {
                        self.actor(i).timers.remove(name);
                    }
                    let seq = self.actor(i).head;
                    if let Some((key, expires, fp)) = &it.idem {
                        self.put_idem(i, key.clone(), *expires, *fp, it.request, seq);
                    }
                    if let Some(id) = it.request {
                        self.requests.insert(id, (i, RequestStatus::Pending));
                    }
                    let result = it.result.clone().expect("ran");
                    self.apply_turn(i, seq, it.env.clone(), result, &mut out);
                    acks[n] = Some(EnqueueAck::Accepted { seq });
                }
            } else {
                applied_all = false;
                fallback = inline.iter().collect();
            }
        }

        if out.carried {
            self.actor(i).state = Some(std::mem::take(&mut out.running));
        }
        for (to, outcome, refusal) in out.replies {
            match to {
                ReplyTo::Request(id) => {
                    let status = match outcome {
                        Ok(reply) => RequestStatus::Completed { reply },
                        Err(error) => RequestStatus::Failed { error, refusal },
                    };
                    self.settle(tenant, id.0, status);
                }
                ReplyTo::Actor { .. } => unreachable!("no asks are generated"),
            }
        }
        for (to, env) in out.outgoing {
            self.enqueue(to, env);
        }
        let first_fallback = inline.len() - fallback.len();
        for (n, it) in fallback.into_iter().enumerate() {
            let ack = match &it.timer {
                Some((due, name)) => {
                    self.fire_one(*due, i, name);
                    EnqueueAck::Accepted { seq: 0 }
                }
                None => self.enqueue_request(i, it.env.clone(), it.request, it.idem.clone()),
            };
            acks[first_fallback + n] = Some(ack);
        }
        Some((
            acks.into_iter().map(|a| a.expect("answered")).collect(),
            applied_all,
        ))
    }

    fn delete(&mut self, i: usize) -> bool {
        let Some(a) = self.actors[i].take() else {
            return false;
        };
        let tenant = ACTORS[i].0;
        self.tenant_actors[tenant] = self.tenant_actors[tenant].saturating_sub(1);
        for env in a.mailbox.values() {
            if let MessageKind::Request { request } = env.kind {
                let error = format!("actor {} was deleted", actor_id(i));
                self.settle(
                    tenant,
                    request.0,
                    RequestStatus::Failed {
                        error,
                        refusal: None,
                    },
                );
            }
        }
        true
    }

    fn purge(&mut self, max: usize) -> usize {
        let expired: Vec<_> = self
            .idem_expiry
            .iter()
            .filter(|(at, _, _)| *at < self.now)
            .take(max)
            .cloned()
            .collect();
        for (at, tenant, key) in &expired {
            self.idem_expiry.remove(&(*at, tenant.clone(), key.clone()));
            let t = TENANTS.iter().position(|n| n == tenant).expect("tenant");
            if self
                .idem
                .get(&(t, key.clone()))
                .is_some_and(|r| r.expires == *at)
            {
                self.idem.remove(&(t, key.clone()));
            }
        }
        expired.len()
    }
}

fn answer_to(env: &Envelope) -> Option<ReplyTo> {
    match &env.kind {
        MessageKind::Request { request } => Some(ReplyTo::Request(*request)),
        _ => None,
    }
}

/// An inline turn as the model sees it.
#[derive(Debug, Clone)]
struct ModelInline {
    env: Envelope,
    request: Option<u128>,
    idem: Option<(String, UnixMs, [u8; 32])>,
    timer: Option<(UnixMs, String)>,
    result: Option<TurnResult>,
}

// ---------------------------------------------------------------------------------------
// The real store

struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> UnixMs {
        self.0.load(Ordering::SeqCst)
    }
    // The store never sleeps on its clock.
    fn sleep_until(&self, _: UnixMs) -> dwell::domain::Sleep {
        Box::pin(std::future::pending())
    }
}

struct Quiet;

impl PostCommit for Quiet {
    fn committed(&self, _notices: Vec<Notice>) {}
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    clock: Arc<TestClock>,
    model: Model,
    next_request: u128,
    next_tag: u64,
    /// Every request id handed out, to reply to and to check.
    requests: Vec<u128>,
    /// Timer payload → its due time, and where it was first seen delivered.
    timer_due: HashMap<Vec<u8>, UnixMs>,
    timer_seen: HashMap<Vec<u8>, (usize, u64)>,
}

const START_MS: UnixMs = 1_000;

impl Harness {
    fn new() -> Harness {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let clock = Arc::new(TestClock(AtomicU64::new(START_MS)));
        let store = dwell::storage::open(dir.path(), None)
            .expect("open the store")
            .start(
                Arc::new(Quiet),
                clock.clone(),
                WriterConfig {
                    max_actors: MAX_ACTORS,
                    placement: None,
                },
                None,
            );
        for t in TENANTS {
            runtime()
                .block_on(store.put_module(
                    TenantId(t.to_owned()),
                    "m".into(),
                    b"wasm".to_vec(),
                    DIGEST.into(),
                ))
                .expect("put module");
        }
        Harness {
            _dir: dir,
            store,
            clock,
            model: Model {
                now: START_MS,
                ..Model::default()
            },
            next_request: 1,
            next_tag: 0,
            requests: Vec::new(),
            timer_due: HashMap::new(),
            timer_seen: HashMap::new(),
        }
    }

    fn tag(&mut self, prefix: &str) -> Vec<u8> {
        self.next_tag += 1;
        format!("{prefix}{};", self.next_tag).into_bytes()
    }

    fn new_request(&mut self) -> u128 {
        let id = self.next_request;
        self.next_request += 1;
        self.requests.push(id);
        id
    }

    fn idem(&self, idem: Option<Idem>) -> Option<(String, UnixMs, [u8; 32])> {
        idem.map(|i| {
            let mut fp = [0u8; 32];
            fp[0] = i.fingerprint % 2;
            (
                KEYS[usize::from(i.key) % KEYS.len()].to_owned(),
                self.model.now + u64::from(i.ttl % 40),
                fp,
            )
        })
    }

    /// A new message for actor `i`: a request (with a new request id) or an event.
    fn message(&mut self, request: bool) -> (Envelope, Option<u128>) {
        let body = self.tag("m");
        let (kind, id) = if request {
            let id = self.new_request();
            (
                MessageKind::Request {
                    request: RequestId(id),
                },
                Some(id),
            )
        } else {
            (MessageKind::Event, None)
        };
        let env = Envelope {
            kind,
            body,
            enqueued_ms: self.model.now,
            trace: None,
        };
        (env, id)
    }

    /// The outcome of a turn of actor `i` on `env`, on the running `state`.
    fn outcome(
        &mut self,
        i: usize,
        env: &Envelope,
        spec: &TurnSpec,
        state: &mut Vec<u8>,
    ) -> TurnResult {
        match spec.outcome {
            Outcome::DeadLetter => TurnResult::DeadLetter {
                error: "trapped".into(),
                attempts: 3,
            },
            Outcome::Refused => TurnResult::Refused {
                error: "no".into(),
                refusal: RefusalCode::Conflict,
            },
            Outcome::Done => {
                // The state records every message applied, in order.
                state.extend_from_slice(&env.body);
                let mut effects = Vec::new();
                for e in spec.effects.iter().take(4) {
                    effects.push(match *e {
                        EffectSpec::SetTimer { name, delay } => {
                            let payload = self.tag("t");
                            let due = self.model.now + u64::from(delay % 50);
                            self.timer_due.insert(payload.clone(), due);
                            Effect::SetTimer {
                                name: TIMER_NAMES[usize::from(name) % TIMER_NAMES.len()].to_owned(),
                                due_ms: due,
                                payload,
                            }
                        }
                        EffectSpec::CancelTimer { name } => Effect::CancelTimer {
                            name: TIMER_NAMES[usize::from(name) % TIMER_NAMES.len()].to_owned(),
                        },
                        EffectSpec::Complete => Effect::Complete,
                        EffectSpec::ReplyOwn => match &env.kind {
                            MessageKind::Request { request } => Effect::Reply {
                                to: ReplyTo::Request(*request),
                                outcome: Ok(env.body.clone()),
                                refusal: None,
                            },
                            _ => continue,
                        },
                        EffectSpec::Reply { request, ok } => {
                            let id = self
                                .requests
                                .get(usize::from(request))
                                .copied()
                                .unwrap_or(u128::MAX);
                            Effect::Reply {
                                to: ReplyTo::Request(RequestId(id)),
                                outcome: if ok {
                                    Ok(b"r".to_vec())
                                } else {
                                    Err("e".into())
                                },
                                refusal: None,
                            }
                        }
                        EffectSpec::Send { to } => {
                            let tenant = ACTORS[i].0;
                            let same: Vec<usize> = (0..ACTORS.len())
                                .filter(|&j| ACTORS[j].0 == tenant)
                                .collect();
                            let to = same[usize::from(to) % same.len()];
                            Effect::Send {
                                to: actor_id(to),
                                body: self.tag("s"),
                            }
                        }
                    });
                }
                TurnResult::Done {
                    state: Vec::new(),
                    effects,
                }
            }
        }
    }

    /// Only the last successful turn carries the state snapshot (the runner's rule).
    fn carry_state(results: &mut [&mut TurnResult], state: &[u8]) {
        if let Some(TurnResult::Done { state: slot, .. }) = results
            .iter_mut()
            .rev()
            .find(|r| matches!(r, TurnResult::Done { .. }))
            .map(|r| &mut **r)
        {
            *slot = state.to_vec();
        }
    }

    /// What a runner believes about actor `i`, broken as `stale` says.
    fn expect(&self, i: usize, head_after_turns: u64, stale: u8) -> Expect {
        let a = self.model.actors[i].as_ref();
        let mut e = Expect {
            head_seq: head_after_turns,
            created_ms: a.map(|a| a.created_ms),
            digest: DIGEST.into(),
        };
        match stale % 8 {
            1 => e.head_seq += 1,
            2 => e.digest = "old".into(),
            3 => e.created_ms = Some(e.created_ms.map_or(7, |c| c + 1)),
            4 => e.created_ms = None,
            _ => {}
        }
        e
    }

    fn step(&mut self, op: &Op) {
        let rt = runtime();
        match op {
            Op::Advance { ms } => {
                self.model.now += u64::from(*ms % 32);
                self.clock.0.store(self.model.now, Ordering::SeqCst);
            }
            Op::Enqueue {
                actor,
                request,
                idem,
            } => {
                let i = usize::from(*actor) % ACTORS.len();
                let (env, id) = self.message(*request);
                let idem = self.idem(*idem);
                let req = EnqueueRequest {
                    actor: actor_id(i),
                    envelope: env.clone(),
                    request: id.map(|id| NewRequest {
                        id: RequestId(id),
                        callback_url: None,
                    }),
                    idempotency: idem
                        .clone()
                        .map(|(key, expires_ms, fingerprint)| Idempotency {
                            key,
                            expires_ms,
                            fingerprint,
                        }),
                };
                let before = self
                    .model
                    .idem
                    .get(&(ACTORS[i].0, idem.clone().map(|x| x.0).unwrap_or_default()))
                    .cloned();
                let got = rt.block_on(self.store.enqueue(req)).expect("enqueue");
                let want = self.model.enqueue_request(i, env, id, idem.clone());
                assert_eq!(got, want, "enqueue to {} ({idem:?})", actor_id(i));
                note(&format!("enqueue {}", ack_name(&got)));
                // The idempotency rules, stated directly.
                if let (Some((_, _, fp)), Some(rec)) = (&idem, before)
                    && rec.expires > self.model.now
                {
                    let want = if rec.actor == i && rec.fingerprint == *fp {
                        EnqueueAck::Duplicate {
                            request: rec.request.map(RequestId),
                            seq: rec.seq,
                        }
                    } else {
                        EnqueueAck::KeyConflict
                    };
                    assert_eq!(got, want, "a repeated key");
                }
            }
            Op::Batch {
                actor,
                turns,
                inline,
                stale,
                skip_first,
                replay,
            } => {
                // Half the time an actor with mail, if any, so that turns have messages.
                let with_mail: Vec<usize> = (0..ACTORS.len())
                    .filter(|&j| {
                        self.model.actors[j]
                            .as_ref()
                            .is_some_and(|a| !a.mailbox.is_empty())
                    })
                    .collect();
                let i = match *actor {
                    n if n >= 128 && !with_mail.is_empty() => {
                        with_mail[usize::from(n) % with_mail.len()]
                    }
                    n => usize::from(n) % ACTORS.len(),
                };
                let id = actor_id(i);
                // What a runner reads: meta, state, the first messages.
                let pending = self
                    .store
                    .pending(&id, turns.len().min(4))
                    .expect("pending");
                let mut state = pending
                    .as_ref()
                    .and_then(|p| p.state.clone())
                    .unwrap_or_else(|| b"S;".to_vec());
                let messages = pending.map(|p| p.messages).unwrap_or_default();
                let mut committed: Vec<CommittedTurn> = Vec::new();
                let mut head = self.model.actors[i].as_ref().map_or(0, |a| a.head);
                for ((seq, env), spec) in messages.iter().zip(turns.iter()) {
                    let result = self.outcome(i, env, spec, &mut state);
                    committed.push(CommittedTurn {
                        seq: *seq,
                        result,
                        took_us: 1,
                    });
                    head = seq + 1;
                }
                {
                    let mut results: Vec<&mut TurnResult> =
                        committed.iter_mut().map(|t| &mut t.result).collect();
                    Self::carry_state(&mut results, &state);
                }
                if *skip_first && !committed.is_empty() {
                    committed.remove(0);
                }
                // A turn for an actor that does not exist (the writer refuses the batch).
                if self.model.actors[i].is_none() && !turns.is_empty() && *stale % 2 == 1 {
                    committed.push(CommittedTurn {
                        seq: 0,
                        result: TurnResult::DeadLetter {
                            error: "x".into(),
                            attempts: 1,
                        },
                        took_us: 0,
                    });
                }
                let mut model_inline = Vec::new();
                let mut real_inline = Vec::new();
                let mut answers = Vec::new();
                // Like the runner: once a message could not be run, none after it is.
                let mut stopped = false;
                for spec in inline.iter().take(3) {
                    let (env, rid) = self.message(spec.request);
                    let idem = self.idem(spec.idem);
                    stopped |= spec.result.is_none();
                    let result = match &spec.result {
                        Some(s) if !stopped => Some(self.outcome(i, &env, s, &mut state)),
                        _ => None,
                    };
                    model_inline.push(ModelInline {
                        env: env.clone(),
                        request: rid,
                        idem: idem.clone(),
                        timer: None,
                        result,
                    });
                    let (done, rx) = oneshot::channel();
                    answers.push(rx);
                    real_inline.push(InlineTurn {
                        req: EnqueueRequest {
                            actor: id.clone(),
                            envelope: env,
                            request: rid.map(|r| NewRequest {
                                id: RequestId(r),
                                callback_url: None,
                            }),
                            idempotency: idem.map(|(key, expires_ms, fingerprint)| Idempotency {
                                key,
                                expires_ms,
                                fingerprint,
                            }),
                        },
                        timer: None,
                        result: None,
                        took_us: 0,
                        done,
                    });
                }
                // The runner's rule for inline turns: the ones it ran, up to the first
                // it could not; the last successful one carries the state.
                let ran = model_inline
                    .iter()
                    .position(|m| m.result.is_none())
                    .unwrap_or(model_inline.len());
                {
                    let mut results: Vec<&mut TurnResult> = model_inline[..ran]
                        .iter_mut()
                        .filter_map(|m| m.result.as_mut())
                        .collect();
                    Self::carry_state(&mut results, &state);
                }
                for (m, r) in model_inline.iter_mut().zip(real_inline.iter_mut()) {
                    r.result = m.result.clone();
                }
                let expect = self.expect(i, head, *stale);
                let expect_opt = (!real_inline.is_empty()).then(|| expect.clone());
                let model_turns: Vec<(u64, TurnResult)> = committed
                    .iter()
                    .map(|t| (t.seq, t.result.clone()))
                    .collect();
                let got = rt.block_on(self.store.commit_batch(
                    id.clone(),
                    committed.clone(),
                    real_inline,
                    expect_opt,
                    HISTORY,
                ));
                let want = self.model.commit(i, &model_turns, &model_inline, &expect);
                match (got, want) {
                    (Err(_), None) => {}
                    (Ok(ack), Some((acks, applied))) => {
                        assert_eq!(ack.inline_applied, applied, "inline applied");
                        if !model_inline.is_empty() {
                            note(&format!("batch inline applied={applied}"));
                        }
                        note(&format!("batch turns {}", model_turns.len()));
                        let got_acks: Vec<EnqueueAck> = answers
                            .into_iter()
                            .map(|rx| rt.block_on(rx).expect("answered").expect("inline enqueue"))
                            .collect();
                        assert_eq!(got_acks, acks, "inline answers");
                        match (&ack.meta, &self.model.actors[i]) {
                            (Some(m), Some(a)) => assert_eq!(m.head_seq, a.head),
                            (None, None) => {}
                            (m, a) => panic!("batch meta {m:?} but model {a:?}"),
                        }
                    }
                    (got, want) => panic!("batch: store {got:?}, model {want:?}"),
                }
                if *replay && !committed.is_empty() {
                    let again = rt.block_on(self.store.commit_turns(id, committed, HISTORY));
                    let want = self.model.commit(i, &model_turns, &[], &expect);
                    assert_eq!(again.is_ok(), want.is_some(), "replayed batch");
                }
            }
            Op::InlineTimer {
                timer,
                wrong_due,
                stale,
                result,
            } => {
                // The timer worker hands over only timers that are due.
                let due: Vec<(TimerKey, Vec<u8>)> = self
                    .model
                    .schedule()
                    .into_iter()
                    .filter(|((d, _, _), _)| *d <= self.model.now)
                    .collect();
                let Some(((d, key, name), payload)) =
                    due.get(usize::from(*timer) % due.len().max(1)).cloned()
                else {
                    return;
                };
                let i = actor_of_key(&key);
                let d = if *wrong_due { d + 1 } else { d };
                let env = Envelope {
                    kind: MessageKind::Timer { name: name.clone() },
                    body: payload,
                    enqueued_ms: self.model.now,
                    trace: None,
                };
                let mut state = self.model.actors[i]
                    .as_ref()
                    .and_then(|a| a.state.clone())
                    .unwrap_or_else(|| b"S;".to_vec());
                let mut r = self.outcome(i, &env, result, &mut state);
                Self::carry_state(&mut [&mut r], &state);
                let head = self.model.actors[i].as_ref().map_or(0, |a| a.head);
                let expect = self.expect(i, head, *stale);
                let (done, rx) = oneshot::channel();
                let inline = InlineTurn {
                    req: EnqueueRequest {
                        actor: actor_id(i),
                        envelope: env.clone(),
                        request: None,
                        idempotency: None,
                    },
                    timer: Some(d),
                    result: Some(r.clone()),
                    took_us: 0,
                    done,
                };
                let ack = rt
                    .block_on(self.store.commit_batch(
                        actor_id(i),
                        Vec::new(),
                        vec![inline],
                        Some(expect.clone()),
                        HISTORY,
                    ))
                    .expect("commit");
                let got = rt.block_on(rx).expect("answered").expect("ack");
                let model = ModelInline {
                    env: env.clone(),
                    request: None,
                    idem: None,
                    timer: Some((d, name)),
                    result: Some(r),
                };
                let (acks, applied) = self
                    .model
                    .commit(i, &[], &[model], &expect)
                    .expect("an existing actor");
                assert_eq!(ack.inline_applied, applied, "inline timer applied");
                note(&format!("inline timer applied={applied}"));
                assert_eq!(vec![got], acks);
                if applied {
                    self.saw_timer(&env.body, i, u64::MAX, env.enqueued_ms);
                }
            }
            Op::FireTimers { max } => {
                let max = usize::from(*max % 8) + 1;
                let got = rt
                    .block_on(self.store.fire_timers(self.model.now, max))
                    .expect("fire");
                let due: Vec<(TimerKey, Vec<u8>)> = self
                    .model
                    .schedule()
                    .into_iter()
                    .filter(|((d, _, _), _)| *d <= self.model.now)
                    .take(max)
                    .collect();
                for ((d, key, name), _) in &due {
                    assert!(self.model.fire_one(*d, actor_of_key(key), name));
                }
                assert_eq!(got, due.len(), "timers fired");
                note(&format!("fire_timers {got}"));
            }
            Op::FireThese { picks } => {
                // The timer worker hands over timers it has seen due (some may have been
                // cancelled, replaced or fired since: `wrong` stands for those).
                let schedule: Vec<(TimerKey, Vec<u8>)> = self
                    .model
                    .schedule()
                    .into_iter()
                    .filter(|((d, _, _), _)| *d <= self.model.now)
                    .collect();
                if schedule.is_empty() {
                    return;
                }
                let keys: Vec<TimerKey> = picks
                    .iter()
                    .take(4)
                    .map(|(n, wrong)| {
                        let ((d, a, name), _) = schedule[usize::from(*n) % schedule.len()].clone();
                        (if *wrong { d + 1 } else { d }, a, name)
                    })
                    .collect();
                let got = rt
                    .block_on(self.store.fire_these(keys.clone()))
                    .expect("fire these");
                let mut want = 0;
                for (d, a, name) in &keys {
                    want += usize::from(self.model.fire_one(*d, actor_of_key(a), name));
                }
                assert_eq!(got, want, "timers fired");
                note(&format!("fire_these {got}"));
            }
            Op::Purge { max } => {
                let max = usize::from(*max % 4) + 1;
                let got = rt
                    .block_on(self.store.purge(self.model.now, max))
                    .expect("purge");
                assert_eq!(got, self.model.purge(max), "keys purged");
                note(&format!("purge {got}"));
            }
            Op::Delete { actor } => {
                let i = usize::from(*actor) % ACTORS.len();
                let got = rt
                    .block_on(
                        self.store
                            .admin(AdminOp::DeleteActor { actor: actor_id(i) }),
                    )
                    .expect("delete");
                assert_eq!(got, self.model.delete(i), "delete");
            }
        }
    }

    /// A timer's message was delivered (`seq` in the mailbox of `i`, or `u64::MAX` for
    /// one applied inline): never twice, never before it was due.
    fn saw_timer(&mut self, payload: &[u8], i: usize, seq: u64, at: UnixMs) {
        let due = self.timer_due[payload];
        assert!(due <= at, "a timer due at {due} fired at {at}");
        if let Some(first) = self.timer_seen.get(payload) {
            assert_eq!(*first, (i, seq), "a timer fired twice");
        } else {
            self.timer_seen.insert(payload.to_vec(), (i, seq));
        }
    }

    /// Everything observable equals the model.
    fn verify(&mut self) {
        let store = &self.store;
        let model = &self.model;
        let mut with_mail = Vec::new();
        let mut seen_timers = Vec::new();
        for (i, a) in model.actors.iter().enumerate() {
            let id = actor_id(i);
            let meta = store.actor_meta(&id).expect("meta");
            let Some(a) = a else {
                assert!(meta.is_none(), "{id} exists but should not");
                assert!(store.timers_of(&id).expect("timers").is_empty());
                continue;
            };
            let meta = meta.unwrap_or_else(|| panic!("{id} should exist"));
            assert_eq!(meta.head_seq, a.head, "{id} head");
            assert_eq!(meta.turns, a.turns, "{id} turns");
            assert_eq!(meta.dead_letters, a.dead_letters, "{id} dead letters");
            assert_eq!(meta.status, a.status, "{id} status");
            assert_eq!(meta.created_ms, a.created_ms, "{id} created");
            assert_eq!(meta.digest, DIGEST);
            assert_eq!(meta.timers as usize, a.timers.len(), "{id} timer count");
            let pending = store.pending(&id, 1000).expect("pending").expect("exists");
            let mailbox: Vec<(u64, Envelope)> =
                a.mailbox.iter().map(|(s, e)| (*s, e.clone())).collect();
            assert_eq!(pending.messages, mailbox, "{id} mailbox");
            assert_eq!(pending.state, a.state, "{id} state");
            if !a.mailbox.is_empty() {
                with_mail.push(id.clone());
            }
            for (seq, env) in &pending.messages {
                if let MessageKind::Timer { .. } = env.kind {
                    seen_timers.push((env.body.clone(), i, *seq, env.enqueued_ms));
                }
            }
            let timers: Vec<(String, UnixMs)> =
                a.timers.iter().map(|(n, (d, _))| (n.clone(), *d)).collect();
            assert_eq!(store.timers_of(&id).expect("timers"), timers, "{id} timers");
            let view = store.actor_view(&id, 1000).expect("view").expect("exists");
            assert_eq!(view.mailbox_depth, a.mailbox.len() as u64);
            let dead: Vec<(u64, Envelope, String)> = view
                .dead_letters
                .into_iter()
                .map(|(s, d)| (s, d.envelope, d.error))
                .collect();
            let want: Vec<(u64, Envelope, String)> = a
                .dead
                .iter()
                .map(|(s, (e, err))| (*s, e.clone(), err.clone()))
                .collect();
            assert_eq!(dead, want, "{id} dead letters");
        }
        with_mail.sort();
        let mut ready = store.ready_actors().expect("ready");
        ready.sort();
        assert_eq!(ready, with_mail, "actors with mail");
        let schedule = model.schedule();
        assert_eq!(
            store.timers_after(None, u64::MAX, 10_000).expect("timers"),
            schedule,
            "timer schedule"
        );
        assert_eq!(
            store.next_timer_due().expect("next"),
            schedule.first().map(|((d, _, _), _)| *d)
        );
        for (t, name) in TENANTS.iter().enumerate() {
            assert_eq!(
                store.tenant_actor_count(name).expect("count"),
                model.tenant_actors[t],
                "actors of {name}"
            );
        }
        for id in &self.requests {
            let got = store.request(RequestId(*id)).expect("request");
            match (got, model.requests.get(id)) {
                (None, None) => {}
                (Some(rec), Some((i, status))) => {
                    assert_eq!(rec.actor, actor_id(*i));
                    assert_eq!(&rec.status, status, "request {id}");
                }
                (got, want) => panic!("request {id}: store {got:?}, model {want:?}"),
            }
        }
        for (payload, i, seq, at) in seen_timers {
            self.saw_timer(&payload, i, seq, at);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Operations until the input runs out (not `Vec<Op>`, which stops each time a
    // "continue" bit is clear: random inputs would be one or two operations long).
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match u.arbitrary::<Op>() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    let mut h = Harness::new();
    for op in &ops {
        if verbose() {
            eprintln!("store_model: now {}: {op:?}", h.model.now);
        }
        h.step(op);
        h.verify();
    }
    if verbose() {
        let tally = std::mem::take(&mut *TALLY.lock().expect("tally"));
        eprintln!("store_model: {} ops: {tally:?}", ops.len());
    }
});

/// `DWELL_FUZZ_VERBOSE=1`: tally what the operations of each input led to (to see what
/// the inputs reach when replaying a corpus).
fn verbose() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DWELL_FUZZ_VERBOSE").is_some())
}

static TALLY: std::sync::Mutex<BTreeMap<String, u32>> = std::sync::Mutex::new(BTreeMap::new());

fn note(what: &str) {
    if verbose() {
        *TALLY
            .lock()
            .expect("tally")
            .entry(what.to_owned())
            .or_default() += 1;
    }
}

fn ack_name(ack: &EnqueueAck) -> &'static str {
    match ack {
        EnqueueAck::Accepted { .. } => "accepted",
        EnqueueAck::ActorCompleted => "completed",
        EnqueueAck::UnknownModule => "unknown module",
        EnqueueAck::Duplicate { .. } => "duplicate",
        EnqueueAck::KeyConflict => "conflict",
        EnqueueAck::ActorQuota(_) => "quota",
    }
}

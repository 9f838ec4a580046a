//! The single writer: group commit.
//!
//! One OS thread owns the write side of redb. It takes the first waiting operation, then
//! everything else already queued (up to [`MAX_OPS`]), applies them all in one write
//! transaction and commits once — one fsync for the whole batch. Only after the commit
//! does it answer the callers and hand the [`Notice`]s to the [`PostCommit`] hook: that is
//! the output gate (nothing leaves before it is durable). When the server is idle a batch
//! is a single operation, so latency stays one fsync; under load batches grow by
//! themselves while the previous fsync runs.

use std::collections::HashSet;
use std::sync::Arc;

use redb::{Database, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{
    ActorId, ActorStatus, Clock, Effect, Envelope, MessageKind, ReplyTo, RequestId, RequestStatus,
    TenantId, TurnResult, UnixMs,
};

use super::Error;
use super::records::{self, ActorMeta, DeadLetter, ModuleRecord, ModuleVersion, RequestRecord};
use super::tables::*;

/// Upper bound on operations in one write transaction.
pub const MAX_OPS: usize = 4096;
/// Capacity of the writer's queue: callers wait (backpressure) when it is full.
pub const QUEUE: usize = 16384;

type Done<T> = oneshot::Sender<Result<T, Error>>;

pub(super) enum Op {
    Enqueue {
        req: EnqueueRequest,
        done: Done<EnqueueAck>,
    },
    CommitTurns {
        actor: ActorId,
        turns: Vec<CommittedTurn>,
        done: Done<()>,
    },
    PutModule {
        tenant: TenantId,
        name: String,
        bytes: Vec<u8>,
        digest: String,
        done: Done<(ModuleVersion, bool)>,
    },
    Stats {
        done: Done<WriterStats>,
    },
}

/// A message to append to an actor's mailbox.
#[derive(Debug, Clone)]
pub struct EnqueueRequest {
    pub actor: ActorId,
    pub envelope: Envelope,
    /// Set for HTTP calls: the request record to create alongside.
    pub request: Option<NewRequest>,
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: RequestId,
    pub callback_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueAck {
    Accepted {
        seq: u64,
    },
    /// The actor's process is complete; nothing was enqueued.
    ActorCompleted,
    /// No module of that name exists for the tenant; nothing was enqueued.
    UnknownModule,
}

/// The outcome of the turn that handled message `seq`.
#[derive(Debug, Clone)]
pub struct CommittedTurn {
    pub seq: u64,
    pub result: TurnResult,
}

/// What became durable, for the post-commit path.
#[derive(Debug, Clone)]
pub enum Notice {
    /// An actor has new mail.
    Mail(ActorId),
    /// A request got its final status.
    Settled(RequestId, RequestStatus),
}

/// Told about every commit, after it is durable.
pub trait PostCommit: Send + Sync + 'static {
    fn committed(&self, notices: Vec<Notice>);
}

/// Counters of the writer since start.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WriterStats {
    pub commits: u64,
    pub ops: u64,
    pub largest_batch: u64,
}

pub(super) fn spawn(
    db: Arc<Database>,
    hook: Arc<dyn PostCommit>,
    clock: Arc<dyn Clock>,
) -> mpsc::Sender<Op> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("dwell-writer".into())
        .spawn(move || run(db, rx, hook, clock))
        .expect("spawn the writer thread");
    tx
}

/// A caller's answer, held until the batch commits.
enum Answer {
    Enqueue(Done<EnqueueAck>, EnqueueAck),
    Unit(Done<()>),
    Module(Done<(ModuleVersion, bool)>, (ModuleVersion, bool)),
}

impl Answer {
    fn send(self, commit: &Result<(), String>) {
        let fail = |e: &String| Error::Corrupt(format!("commit failed: {e}"));
        // A caller that stopped waiting is not an error for the batch.
        match (self, commit) {
            (Answer::Enqueue(d, v), Ok(())) => drop(d.send(Ok(v))),
            (Answer::Unit(d), Ok(())) => drop(d.send(Ok(()))),
            (Answer::Module(d, v), Ok(())) => drop(d.send(Ok(v))),
            (Answer::Enqueue(d, _), Err(e)) => drop(d.send(Err(fail(e)))),
            (Answer::Unit(d), Err(e)) => drop(d.send(Err(fail(e)))),
            (Answer::Module(d, _), Err(e)) => drop(d.send(Err(fail(e)))),
        }
    }
}

fn run(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Op>,
    hook: Arc<dyn PostCommit>,
    clock: Arc<dyn Clock>,
) {
    let mut stats = WriterStats::default();
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_OPS {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        stats.commits += 1;
        stats.ops += ops.len() as u64;
        stats.largest_batch = stats.largest_batch.max(ops.len() as u64);

        let mut answers = Vec::with_capacity(ops.len());
        let mut notices = Vec::new();
        let outcome = apply_batch(&db, ops, clock.now_ms(), &stats, &mut answers, &mut notices);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "write batch failed; its callers get an error");
            notices.clear();
        }
        for a in answers {
            a.send(&outcome);
        }
        if !notices.is_empty() {
            hook.committed(dedupe(notices));
        }
    }
    tracing::debug!("writer stopped");
}

fn dedupe(notices: Vec<Notice>) -> Vec<Notice> {
    let mut seen = HashSet::new();
    notices
        .into_iter()
        .filter(|n| match n {
            Notice::Mail(a) => seen.insert(a.clone()),
            Notice::Settled(..) => true,
        })
        .collect()
}

fn apply_batch(
    db: &Database,
    ops: Vec<Op>,
    now: UnixMs,
    stats: &WriterStats,
    answers: &mut Vec<Answer>,
    notices: &mut Vec<Notice>,
) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut tx = Tx::open(&txn, now, notices).map_err(|e| e.to_string())?;
        for op in ops {
            match op {
                Op::Enqueue { req, done } => {
                    let ack = tx.enqueue_request(req).map_err(|e| e.to_string())?;
                    answers.push(Answer::Enqueue(done, ack));
                }
                Op::CommitTurns { actor, turns, done } => {
                    tx.commit_turns(&actor, turns).map_err(|e| e.to_string())?;
                    answers.push(Answer::Unit(done));
                }
                Op::PutModule {
                    tenant,
                    name,
                    bytes,
                    digest,
                    done,
                } => {
                    let v = tx
                        .put_module(&tenant, &name, &bytes, &digest)
                        .map_err(|e| e.to_string())?;
                    answers.push(Answer::Module(done, v));
                }
                Op::Stats { done } => {
                    let _ = done.send(Ok(stats.clone()));
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

/// The open tables of one write transaction, and what the batch has to announce.
struct Tx<'t> {
    actors: Table<'t, &'static str, &'static [u8]>,
    states: Table<'t, &'static str, &'static [u8]>,
    mailbox: Table<'t, (&'static str, u64), &'static [u8]>,
    ready: Table<'t, &'static str, ()>,
    requests: Table<'t, u128, &'static [u8]>,
    dead: Table<'t, (&'static str, u64), &'static [u8]>,
    modules: Table<'t, &'static str, &'static [u8]>,
    blobs: Table<'t, &'static str, &'static [u8]>,
    now: UnixMs,
    notices: &'t mut Vec<Notice>,
}

impl<'t> Tx<'t> {
    fn open(
        txn: &'t WriteTransaction,
        now: UnixMs,
        notices: &'t mut Vec<Notice>,
    ) -> Result<Self, Error> {
        Ok(Tx {
            actors: txn.open_table(ACTORS)?,
            states: txn.open_table(STATES)?,
            mailbox: txn.open_table(MAILBOX)?,
            ready: txn.open_table(READY)?,
            requests: txn.open_table(REQUESTS)?,
            dead: txn.open_table(DEAD)?,
            modules: txn.open_table(MODULES)?,
            blobs: txn.open_table(BLOBS)?,
            now,
            notices,
        })
    }

    fn meta(&self, key: &str) -> Result<Option<ActorMeta>, Error> {
        match self.actors.get(key)? {
            Some(v) => Ok(Some(records::decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn enqueue_request(&mut self, req: EnqueueRequest) -> Result<EnqueueAck, Error> {
        let ack = self.enqueue(&req.actor, &req.envelope)?;
        if let (EnqueueAck::Accepted { .. }, Some(new)) = (&ack, req.request) {
            let rec = RequestRecord {
                actor: req.actor.storage_key(),
                status: RequestStatus::Pending,
                created_ms: self.now,
                settled_ms: None,
                callback_url: new.callback_url,
            };
            self.requests
                .insert(new.id.0, records::encode(&rec).as_slice())?;
        }
        Ok(ack)
    }

    /// Append to a mailbox, creating the actor (pinned to its module's latest version)
    /// on its first message.
    fn enqueue(&mut self, actor: &ActorId, env: &Envelope) -> Result<EnqueueAck, Error> {
        let key = actor.storage_key();
        let mut meta = match self.meta(&key)? {
            Some(m) => m,
            None => {
                let module: Option<ModuleRecord> =
                    match self.modules.get(actor.module_key().as_str())? {
                        Some(v) => Some(records::decode(v.value())?),
                        None => None,
                    };
                let Some(latest) = module.as_ref().and_then(|m| m.latest()) else {
                    return Ok(EnqueueAck::UnknownModule);
                };
                ActorMeta {
                    module: actor.module.clone(),
                    digest: latest.digest.clone(),
                    version: latest.version,
                    status: ActorStatus::Active,
                    next_seq: 0,
                    head_seq: 0,
                    turns: 0,
                    dead_letters: 0,
                    created_ms: self.now,
                    updated_ms: self.now,
                }
            }
        };
        if meta.status == ActorStatus::Completed {
            return Ok(EnqueueAck::ActorCompleted);
        }
        let seq = meta.next_seq;
        meta.next_seq += 1;
        meta.updated_ms = self.now;
        self.mailbox
            .insert((key.as_str(), seq), records::encode(env).as_slice())?;
        self.actors
            .insert(key.as_str(), records::encode(&meta).as_slice())?;
        self.ready.insert(key.as_str(), ())?;
        self.notices.push(Notice::Mail(actor.clone()));
        Ok(EnqueueAck::Accepted { seq })
    }

    /// Settle a pending request of `tenant`. A request of another tenant, or one already
    /// settled, is left alone (first answer wins).
    fn settle(
        &mut self,
        tenant: &TenantId,
        id: RequestId,
        status: RequestStatus,
    ) -> Result<(), Error> {
        let Some(mut rec) = (match self.requests.get(id.0)? {
            Some(v) => Some(records::decode::<RequestRecord>(v.value())?),
            None => None,
        }) else {
            return Ok(());
        };
        let owner = ActorId::from_storage_key(&rec.actor).map(|a| a.tenant);
        if !rec.status.is_pending() || owner.as_ref() != Some(tenant) {
            return Ok(());
        }
        rec.status = status.clone();
        rec.settled_ms = Some(self.now);
        self.requests
            .insert(id.0, records::encode(&rec).as_slice())?;
        self.notices.push(Notice::Settled(id, status));
        Ok(())
    }

    fn reply(
        &mut self,
        from: &ActorId,
        to: ReplyTo,
        outcome: Result<Vec<u8>, String>,
    ) -> Result<(), Error> {
        match to {
            ReplyTo::Request(id) => {
                let status = match outcome {
                    Ok(reply) => RequestStatus::Completed { reply },
                    Err(error) => RequestStatus::Failed { error },
                };
                self.settle(&from.tenant, id, status)
            }
            ReplyTo::Actor { actor, correlation } => {
                let env = Envelope {
                    kind: MessageKind::AskReply {
                        correlation,
                        outcome,
                    },
                    body: Vec::new(),
                    enqueued_ms: self.now,
                };
                self.enqueue_or_log(&actor, &env)
            }
        }
    }

    fn enqueue_or_log(&mut self, actor: &ActorId, env: &Envelope) -> Result<(), Error> {
        match self.enqueue(actor, env)? {
            EnqueueAck::Accepted { .. } => {}
            refused => tracing::warn!(%actor, ?refused, "message from a turn not delivered"),
        }
        Ok(())
    }

    fn commit_turns(&mut self, actor: &ActorId, turns: Vec<CommittedTurn>) -> Result<(), Error> {
        let key = actor.storage_key();
        let Some(mut meta) = self.meta(&key)? else {
            return Err(Error::Corrupt(format!(
                "turn committed for unknown actor {key}"
            )));
        };
        let mut new_state: Option<Vec<u8>> = None;
        // Messages to other mailboxes wait until this actor's meta is written, so that a
        // message an actor sends to itself lands after its own bookkeeping.
        let mut outgoing: Vec<(ActorId, Envelope)> = Vec::new();
        let mut replies: Vec<(ReplyTo, Result<Vec<u8>, String>)> = Vec::new();
        for turn in turns {
            // Exactly once: a turn whose message is no longer the head was committed before.
            if turn.seq != meta.head_seq {
                tracing::warn!(%actor, seq = turn.seq, head = meta.head_seq, "stale turn ignored");
                continue;
            }
            let Some(env) = self.mailbox.remove((key.as_str(), turn.seq))? else {
                continue;
            };
            let env: Envelope = records::decode(env.value())?;
            meta.head_seq = turn.seq + 1;
            meta.updated_ms = self.now;
            match turn.result {
                TurnResult::Done { state, effects } => {
                    meta.turns += 1;
                    // Within a batch only the last successful turn carries the snapshot;
                    // earlier ones carry an empty vector (never a valid MessagePack value).
                    if !state.is_empty() {
                        new_state = Some(state);
                    }
                    for effect in effects {
                        match effect {
                            Effect::Reply { to, outcome } => replies.push((to, outcome)),
                            Effect::Send { to, body } => outgoing.push((
                                to,
                                Envelope {
                                    kind: MessageKind::Event,
                                    body,
                                    enqueued_ms: self.now,
                                },
                            )),
                            Effect::Ask {
                                to,
                                body,
                                correlation,
                            } => outgoing.push((
                                to,
                                Envelope {
                                    kind: MessageKind::Ask {
                                        from: actor.clone(),
                                        correlation,
                                    },
                                    body,
                                    enqueued_ms: self.now,
                                },
                            )),
                            Effect::Complete => meta.status = ActorStatus::Completed,
                            Effect::SetTimer { .. }
                            | Effect::CancelTimer { .. }
                            | Effect::HttpCall(_) => {
                                tracing::warn!(%actor, "effect not supported yet; dropped");
                            }
                        }
                    }
                }
                TurnResult::DeadLetter { error, attempts } => {
                    meta.dead_letters += 1;
                    match &env.kind {
                        MessageKind::Request { request } => {
                            replies.push((ReplyTo::Request(*request), Err(error.clone())))
                        }
                        MessageKind::Ask { from, correlation } => replies.push((
                            ReplyTo::Actor {
                                actor: from.clone(),
                                correlation: correlation.clone(),
                            },
                            Err(error.clone()),
                        )),
                        _ => {}
                    }
                    let dl = DeadLetter {
                        envelope: env,
                        error,
                        attempts,
                        at_ms: self.now,
                    };
                    self.dead
                        .insert((key.as_str(), turn.seq), records::encode(&dl).as_slice())?;
                }
            }
        }
        if let Some(state) = new_state {
            self.states.insert(key.as_str(), state.as_slice())?;
        }
        if meta.head_seq >= meta.next_seq {
            self.ready.remove(key.as_str())?;
        }
        self.actors
            .insert(key.as_str(), records::encode(&meta).as_slice())?;
        for (to, outcome) in replies {
            self.reply(actor, to, outcome)?;
        }
        for (to, env) in outgoing {
            self.enqueue_or_log(&to, &env)?;
        }
        Ok(())
    }

    fn put_module(
        &mut self,
        tenant: &TenantId,
        name: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(ModuleVersion, bool), Error> {
        let key = format!("{}/{}", tenant.0, name);
        let mut rec: ModuleRecord = match self.modules.get(key.as_str())? {
            Some(v) => records::decode(v.value())?,
            None => ModuleRecord::default(),
        };
        if let Some(latest) = rec.latest()
            && latest.digest == digest
        {
            return Ok((latest.clone(), false));
        }
        if self.blobs.get(digest)?.is_none() {
            self.blobs.insert(digest, bytes)?;
        }
        let v = ModuleVersion {
            version: rec.latest().map(|l| l.version + 1).unwrap_or(1),
            digest: digest.to_owned(),
            size: bytes.len() as u64,
            created_ms: self.now,
        };
        rec.versions.push(v.clone());
        self.modules
            .insert(key.as_str(), records::encode(&rec).as_slice())?;
        Ok((v, true))
    }
}

//! [`Tx`]: the decisions of one write transaction over [`Tables`].
//! Long because every rule of a write lives here once (the operator's writes are in
//! tx/admin.rs).
//!
//! Its parts are ordered as a message travels: enqueue, turns, replies, timers,
//! outbox, expiry; the operator's writes and the deletion cascades are in [`admin`].

mod admin;

use std::collections::HashSet;

use dwell_storage::{Carrier, Error, Staged, StateRef, Tables};
use dwell_types::history::{Retention, STATE_LIMIT, StateMark, TurnRecord};
use dwell_types::records::{
    ActorMeta, CallbackStatus, DeadLetter, Delivery, IdempotencyRecord, OutboxEntry, RequestRecord,
};
use dwell_types::{
    ActorId, ActorStatus, Effect, Envelope, MessageKind, RefusalCode, ReplyTo, RequestId,
    RequestStatus, TenantId, TraceParent, TurnResult, UnixMs,
};

use crate::ops::{
    CommittedTurn, EnqueueAck, EnqueueRequest, Expect, Idempotency, Inline, NewRequest, Notice,
    OutboxUpdate, TurnsAck, WriterConfig,
};

/// The answer to the inline turn at this index of its batch.
pub type InlineAck = (usize, EnqueueAck);

/// An answer to a request or an ask: the reply, or the error and (for a refusal) its
/// class.
/// A reply a turn gave, with the turn's trace context.
type Answered = (
    ReplyTo,
    Result<Vec<u8>, String>,
    Option<RefusalCode>,
    Option<TraceParent>,
);

/// What a batch's turns leave to do after their bookkeeping.
#[derive(Default)]
struct TurnOutput {
    new_state: Option<Vec<u8>>,
    /// The new state is the batch's staged one (then `new_state` is `None`).
    new_ref: Option<StateRef>,
    replies: Vec<Answered>,
    /// Messages to other mailboxes wait until the actor's meta is written, so that a
    /// message an actor sends to itself lands after its own bookkeeping.
    outgoing: Vec<(ActorId, Envelope)>,
}

/// A turn's outcome as the writer applies it.
struct Ran {
    result: TurnResult,
    took_us: u64,
    /// The turn carries the batch's staged (large) state.
    staged: Option<StateRef>,
}

/// One write transaction's decisions. The backend opens its tables, applies any number
/// of operations through this, commits, and only then announces [`Tx::notices`].
pub struct Tx<'a, T: Tables> {
    pub tables: &'a mut T,
    now: UnixMs,
    config: &'a WriterConfig,
    notices: &'a mut Vec<Notice>,
    /// State bytes written in this transaction (snapshots and staged slices).
    pub state_bytes: u64,
    /// The history kept for the turns being committed.
    history: Retention,
}

type R<T> = Result<T, Error>;

impl<'a, T: Tables> Tx<'a, T> {
    pub fn new(
        tables: &'a mut T,
        now: UnixMs,
        config: &'a WriterConfig,
        notices: &'a mut Vec<Notice>,
    ) -> Self {
        Tx {
            tables,
            now,
            config,
            notices,
            state_bytes: 0,
            history: Retention::OFF,
        }
    }

    /// Durably append one message, creating the actor if needed; a repeated
    /// `Idempotency-Key` enqueues nothing and answers what its first use did.
    pub fn enqueue_request(&mut self, req: EnqueueRequest) -> R<EnqueueAck> {
        let tenant = req.actor.tenant.0.as_str();
        if let Some(idem) = &req.idempotency
            && let Some(rec) = self.tables.idempotency(tenant, &idem.key)?
        {
            if rec.expires_ms > self.now {
                if rec.actor != req.actor || rec.fingerprint.is_some_and(|f| f != idem.fingerprint)
                {
                    return Ok(EnqueueAck::KeyConflict);
                }
                return Ok(EnqueueAck::Duplicate {
                    request: rec.request.map(RequestId),
                    seq: rec.seq,
                });
            }
            self.tables.remove_idempotency(tenant, &idem.key)?;
        }
        let ack = self.enqueue(&req.actor, &req.envelope)?;
        if let (EnqueueAck::Accepted { seq }, Some(idem)) = (&ack, &req.idempotency) {
            self.put_idempotency(tenant, idem, &req.actor, req.request.as_ref(), *seq)?;
        }
        if let (EnqueueAck::Accepted { .. }, Some(new)) = (&ack, req.request) {
            self.put_request(&req.actor, new, req.envelope.trace)?;
        }
        Ok(ack)
    }

    fn put_idempotency(
        &mut self,
        tenant: &str,
        idem: &Idempotency,
        actor: &ActorId,
        request: Option<&NewRequest>,
        seq: u64,
    ) -> R<()> {
        let rec = IdempotencyRecord {
            actor: actor.clone(),
            request: request.map(|r| r.id.0),
            seq,
            expires_ms: idem.expires_ms,
            fingerprint: Some(idem.fingerprint),
        };
        self.tables.put_idempotency(tenant, &idem.key, &rec)
    }

    /// A new pending request record.
    fn put_request(
        &mut self,
        actor: &ActorId,
        new: NewRequest,
        trace: Option<TraceParent>,
    ) -> R<()> {
        let rec = RequestRecord {
            actor: actor.clone(),
            status: RequestStatus::Pending,
            created_ms: self.now,
            settled_ms: None,
            callback_url: new.callback_url,
            callback: None,
            trace,
        };
        self.tables.put_request(new.id.0, &rec)
    }

    /// Append to a mailbox, creating the actor (pinned to its module's latest version)
    /// on its first message.
    fn enqueue(&mut self, actor: &ActorId, env: &Envelope) -> R<EnqueueAck> {
        self.enqueue_with(actor, env, |_| false)
    }

    /// [`Tx::enqueue`], adjusting the actor's meta in the same write.
    fn enqueue_with(
        &mut self,
        actor: &ActorId,
        env: &Envelope,
        adjust: impl FnOnce(&mut ActorMeta) -> bool,
    ) -> R<EnqueueAck> {
        let key = actor.storage_key();
        let existing = self.tables.actor(&key)?;
        let is_new = existing.is_none();
        let mut meta = match existing {
            Some(m) => m,
            None => match self.new_actor(actor)? {
                Ok(m) => m,
                Err(refused) => return Ok(refused),
            },
        };
        if meta.status == ActorStatus::Completed {
            return Ok(EnqueueAck::ActorCompleted);
        }
        let last = self.tables.last_seq(&key)?;
        let seq = last.map_or(meta.head_seq, |l| l + 1);
        self.tables.put_mail(&key, seq, env)?;
        if adjust(&mut meta) || is_new {
            self.tables.put_actor(&key, &meta)?;
        }
        self.notices.push(Notice::Mail(actor.clone()));
        Ok(EnqueueAck::Accepted { seq })
    }

    /// The meta of a brand-new actor, pinned to its module's latest version, counted
    /// against its tenant's actor quota (the caller writes the meta).
    fn new_actor(&mut self, actor: &ActorId) -> R<Result<ActorMeta, EnqueueAck>> {
        let module = self.tables.module(&actor.module_key())?;
        let Some(latest) = module.as_ref().and_then(|m| m.latest()) else {
            return Ok(Err(EnqueueAck::UnknownModule));
        };
        let tenant = actor.tenant.0.as_str();
        // The tenant's record is kept by name; its identity may differ.
        let name = self
            .tables
            .tenant_name(tenant)?
            .unwrap_or_else(|| tenant.to_owned());
        let max = match self.tables.tenant(&name)? {
            Some(rec) => rec.quotas.max_actors,
            None => None,
        }
        .unwrap_or(self.config.max_actors);
        let count = self.tables.actor_count(tenant)?;
        if count >= max {
            return Ok(Err(EnqueueAck::ActorQuota(max)));
        }
        self.tables.put_actor_count(tenant, count + 1)?;
        Ok(Ok(ActorMeta {
            module: actor.module.clone(),
            digest: latest.digest.clone(),
            version: latest.version,
            status: ActorStatus::Active,
            head_seq: 0,
            turns: 0,
            dead_letters: 0,
            created_ms: self.now,
            updated_ms: self.now,
            timers: 0,
            step: None,
            history: Default::default(),
        }))
    }

    /// Whether inline turns are all addressed to `actor`, their timers are still pending,
    /// and none of their `Idempotency-Key`s is taken (stored and unexpired, or repeated
    /// among them).
    fn fresh_keys<'i>(&self, actor: &ActorId, inline: impl Iterator<Item = &'i Inline>) -> R<bool> {
        let tenant = actor.tenant.0.as_str();
        let key = actor.storage_key();
        let mut seen = HashSet::new();
        for it in inline {
            if it.req.actor != *actor {
                return Ok(false);
            }
            if let (Some(due), MessageKind::Timer { name }) = (it.timer, &it.req.envelope.kind)
                && !self.tables.timer_pending(due, &key, name)?
            {
                return Ok(false);
            }
            let Some(idem) = &it.req.idempotency else {
                continue;
            };
            if !seen.insert(idem.key.as_str()) {
                return Ok(false);
            }
            if let Some(rec) = self.tables.idempotency(tenant, &idem.key)?
                && rec.expires_ms > self.now
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Settle a pending request of `tenant`. A request of another tenant, or one already
    /// settled, is left alone (first answer wins).
    fn settle(&mut self, tenant: &TenantId, id: RequestId, status: RequestStatus) -> R<()> {
        let Some(mut rec) = self.tables.request(id.0)? else {
            return Ok(());
        };
        if !rec.status.is_pending() || &rec.actor.tenant != tenant {
            return Ok(());
        }
        rec.status = status.clone();
        rec.settled_ms = Some(self.now);
        if let Some(url) = &rec.callback_url {
            rec.callback = Some(CallbackStatus::Pending { attempts: 0 });
            self.outbox_add(Delivery::Callback {
                request: id.0,
                url: url.clone(),
                trace: rec.trace,
            })?;
        }
        self.tables.put_request(id.0, &rec)?;
        self.notices.push(Notice::Settled(id, status));
        Ok(())
    }

    pub(crate) fn reply(
        &mut self,
        from: &ActorId,
        to: ReplyTo,
        outcome: Result<Vec<u8>, String>,
        refusal: Option<RefusalCode>,
        trace: Option<TraceParent>,
    ) -> R<()> {
        match to {
            ReplyTo::Request(id) => {
                let status = match outcome {
                    Ok(reply) => RequestStatus::Completed { reply },
                    Err(error) => RequestStatus::Failed { error, refusal },
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
                    trace,
                };
                self.enqueue_or_log(&actor, &env)
            }
        }
    }

    /// Deliver a message a turn sent. One that cannot be delivered is not lost silently:
    /// an ask is answered with an error (the asker handles it like any refusal); a
    /// one-way send is logged.
    /// For an actor another node runs, the message goes to the inbox (its owner takes it
    /// with [`Tx::deliver_inbox`], and answers an undeliverable ask there).
    fn enqueue_or_log(&mut self, actor: &ActorId, env: &Envelope) -> R<()> {
        if !self.config.local(actor) {
            return self.tables.put_inbox(&actor.storage_key(), env);
        }
        let why = match self.enqueue(actor, env)? {
            EnqueueAck::Accepted { .. } => return Ok(()),
            EnqueueAck::ActorCompleted => format!("the process of actor {actor} is complete"),
            EnqueueAck::UnknownModule => format!("no module named {:?}", actor.module),
            EnqueueAck::ActorQuota(max) => format!("this tenant may have at most {max} actors"),
            other => format!("not delivered: {other:?}"),
        };
        match &env.kind {
            MessageKind::Ask { from, correlation } => {
                let answer = Envelope {
                    kind: MessageKind::AskReply {
                        correlation: correlation.clone(),
                        outcome: Err(why),
                    },
                    body: Vec::new(),
                    enqueued_ms: self.now,
                    trace: env.trace,
                };
                if !self.config.local(from) {
                    self.tables.put_inbox(&from.storage_key(), &answer)?;
                } else if !matches!(self.enqueue(from, &answer)?, EnqueueAck::Accepted { .. }) {
                    tracing::warn!(%actor, asker = %from, "the answer to an undeliverable ask was not delivered either");
                }
            }
            _ => tracing::warn!(%actor, %why, "message from a turn not delivered"),
        }
        Ok(())
    }

    /// Commit a runner's batch: the outcomes of its mailbox turns, then its inline turns
    /// (see [`Inline`]), then their replies and outgoing messages; each applied turn
    /// leaves a history record as `history` says. Returns the answer to every inline
    /// turn, by its index in `inline`.
    pub fn commit_turns(
        &mut self,
        actor: &ActorId,
        turns: Vec<CommittedTurn>,
        inline: Vec<Inline>,
        expect: Option<Expect>,
        staged: Option<Staged>,
        history: Retention,
    ) -> R<(TurnsAck, Vec<InlineAck>)> {
        self.history = history;
        let mut acks = Vec::with_capacity(inline.len());
        let ack = self.commit_turns_inner(actor, turns, inline, expect, staged, &mut acks)?;
        // Slices of a snapshot that was not applied are dropped with the batch (a no-op
        // when the turn's commit took them).
        if let Some(staged) = staged {
            self.tables.unstage(staged.state.id)?;
        }
        Ok((ack, acks))
    }

    fn commit_turns_inner(
        &mut self,
        actor: &ActorId,
        turns: Vec<CommittedTurn>,
        inline: Vec<Inline>,
        expect: Option<Expect>,
        staged: Option<Staged>,
        acks: &mut Vec<InlineAck>,
    ) -> R<TurnsAck> {
        let key = actor.storage_key();
        let carries = |c: Carrier| staged.filter(|s| s.carrier == c).map(|s| s.state);
        let existing = self.tables.actor(&key)?;
        let existed = existing.is_some();
        let mut meta = match existing {
            Some(m) => m,
            None if turns.is_empty() && !inline.is_empty() => match self.new_actor(actor)? {
                Ok(m) => m,
                Err(refused) => {
                    acks.extend((0..inline.len()).map(|j| (j, refused.clone())));
                    return Ok(TurnsAck {
                        meta: None,
                        inline_applied: false,
                    });
                }
            },
            None if turns.is_empty() => {
                return Ok(TurnsAck {
                    meta: None,
                    inline_applied: true,
                });
            }
            None => {
                return Err(Error::Corrupt(format!(
                    "turn committed for unknown actor {key}"
                )));
            }
        };
        let mut out = TurnOutput::default();
        // Turns run on another version than the actor is on now (an upgrade or rollback
        // committed meanwhile) are ignored: the runner reads the store and runs them again.
        let on_version = expect.as_ref().is_none_or(|e| e.digest == meta.digest);
        for (i, turn) in turns.into_iter().enumerate() {
            if !on_version {
                tracing::info!(%actor, seq = turn.seq, "turn run on a replaced version ignored");
                break;
            }
            // Exactly once: a turn whose message is no longer the head was committed before.
            if turn.seq != meta.head_seq {
                tracing::warn!(%actor, seq = turn.seq, head = meta.head_seq, "stale turn ignored");
                continue;
            }
            let Some(env) = self.tables.take_mail(&key, turn.seq)? else {
                continue;
            };
            let ran = Ran {
                result: turn.result,
                took_us: turn.took_us,
                staged: carries(Carrier::Turn(i)),
            };
            self.apply_turn(actor, &key, &mut meta, turn.seq, env, ran, &mut out)?;
            if let Some(r) = carries(Carrier::Turn(i)) {
                out.new_state = None;
                out.new_ref = Some(r);
            }
        }

        // Inline turns apply only to the actor exactly as the runner saw it, with no
        // mailbox message ahead of them, and only all together (only the last one carries
        // the state snapshot): otherwise each is enqueued instead, its outcome discarded.
        // Those the runner could not run come last and are always enqueued.
        let mut inline: Vec<(usize, Inline)> = inline.into_iter().enumerate().collect();
        let run = inline
            .iter()
            .position(|(_, it)| it.result.is_none())
            .unwrap_or(inline.len());
        let mut fallback = inline.split_off(run);
        let mut applied_all = fallback.is_empty();
        if !inline.is_empty() {
            let seen = expect.as_ref().is_some_and(|e| {
                e.head_seq == meta.head_seq
                    && e.digest == meta.digest
                    && match e.created_ms {
                        Some(c) => existed && c == meta.created_ms,
                        None => !existed,
                    }
            });
            let applies = seen
                && meta.status == ActorStatus::Active
                && !self.tables.has_mail(&key)?
                && self.fresh_keys(actor, inline.iter().map(|(_, it)| it))?;
            if applies {
                let tenant = actor.tenant.0.as_str();
                for (j, it) in inline {
                    let Some(result) = it.result else { continue };
                    if let (Some(due), MessageKind::Timer { name }) =
                        (it.timer, &it.req.envelope.kind)
                    {
                        self.take_timer(due, &key, name, &mut meta)?;
                    }
                    let seq = meta.head_seq;
                    if let Some(idem) = &it.req.idempotency {
                        self.put_idempotency(tenant, idem, actor, it.req.request.as_ref(), seq)?;
                    }
                    if let Some(new) = it.req.request {
                        self.put_request(actor, new, it.req.envelope.trace)?;
                    }
                    let ran = Ran {
                        result,
                        took_us: it.took_us,
                        staged: carries(Carrier::Inline(j)),
                    };
                    self.apply_turn(actor, &key, &mut meta, seq, it.req.envelope, ran, &mut out)?;
                    if let Some(r) = carries(Carrier::Inline(j)) {
                        out.new_state = None;
                        out.new_ref = Some(r);
                    }
                    acks.push((j, EnqueueAck::Accepted { seq }));
                }
            } else {
                applied_all = false;
                inline.append(&mut fallback);
                fallback = inline;
            }
        }

        if let Some(state) = out.new_state.take() {
            self.state_bytes += state.len() as u64;
            self.tables.put_state(&key, &state)?;
        } else if let Some(r) = out.new_ref.take() {
            self.tables.put_state_ref(&key, r)?;
        }
        self.tables.put_actor(&key, &meta)?;
        for (to, outcome, refusal, trace) in out.replies {
            self.reply(actor, to, outcome, refusal, trace)?;
        }
        for (to, env) in out.outgoing {
            self.enqueue_or_log(&to, &env)?;
        }
        for (j, it) in fallback {
            let ack = match (it.timer, &it.req.envelope.kind) {
                (Some(due), MessageKind::Timer { name }) => {
                    self.fire_one(due, &key, name)?;
                    EnqueueAck::Accepted { seq: 0 }
                }
                _ => self.enqueue_request(it.req)?,
            };
            acks.push((j, ack));
        }
        // Later writes in this op (messages to itself, the fall-back enqueues) append to
        // the mailbox of an existing actor and leave its meta as written above.
        Ok(TurnsAck {
            meta: Some(meta),
            inline_applied: applied_all && on_version,
        })
    }

    /// Dequeue bookkeeping, history and effects of one turn, on `meta` (written by the
    /// caller).
    #[allow(clippy::too_many_arguments)]
    fn apply_turn(
        &mut self,
        actor: &ActorId,
        key: &str,
        meta: &mut ActorMeta,
        seq: u64,
        env: Envelope,
        ran: Ran,
        out: &mut TurnOutput,
    ) -> R<()> {
        meta.head_seq = seq + 1;
        meta.updated_ms = self.now;
        self.record_turn(key, meta, seq, &env, &ran)?;
        // What the turn causes continues the trace under the turn's own span.
        let trace = env.trace.map(|t| t.turn(key, seq));
        match ran.result {
            TurnResult::Done { state, effects } => {
                meta.turns += 1;
                // Within a batch only the last successful turn carries the snapshot;
                // earlier ones carry an empty vector (never a valid MessagePack value).
                if !state.is_empty() {
                    out.new_state = Some(state);
                    out.new_ref = None;
                }
                for effect in effects {
                    match effect {
                        Effect::Reply {
                            to,
                            outcome,
                            refusal,
                        } => out.replies.push((to, outcome, refusal, trace)),
                        Effect::Send { to, body } => out.outgoing.push((
                            to,
                            Envelope {
                                kind: MessageKind::Event,
                                body,
                                enqueued_ms: self.now,
                                trace,
                            },
                        )),
                        Effect::Ask {
                            to,
                            body,
                            correlation,
                        } => out.outgoing.push((
                            to,
                            Envelope {
                                kind: MessageKind::Ask {
                                    from: actor.clone(),
                                    correlation,
                                },
                                body,
                                enqueued_ms: self.now,
                                trace,
                            },
                        )),
                        Effect::Complete => {
                            meta.status = ActorStatus::Completed;
                            self.cancel_all_timers(key, meta)?;
                        }
                        // A completed process has no timers (`Complete` cancelled them);
                        // one set after it in the same turn would never be handled.
                        Effect::SetTimer { .. } if meta.status == ActorStatus::Completed => {}
                        Effect::SetTimer {
                            name,
                            due_ms,
                            payload,
                        } => self.set_timer(key, meta, &name, due_ms, &payload)?,
                        Effect::CancelTimer { name } => self.cancel_timer(key, meta, &name)?,
                        // Recorded with the turn (`record_turn`).
                        Effect::Step { .. } => {}
                        Effect::HttpCall(mut spec) => {
                            spec.trace = trace;
                            let call_id = spec.call_id.clone();
                            let id = self.outbox_add(Delivery::Http {
                                actor: actor.clone(),
                                spec,
                            })?;
                            self.tables.put_http_pending(key, &call_id, id)?;
                        }
                    }
                }
            }
            TurnResult::Refused { error, refusal } => match answer_to(&env) {
                // An answer, not a failure: the caller hears the refusal; the state and
                // the dead letters stay as they were.
                Some(to) => out.replies.push((to, Err(error), Some(refusal), trace)),
                // Nobody to tell (an event, a timer…): kept where an operator sees it.
                None => {
                    let error = format!("refused by the actor ({}): {error}", refusal.as_str());
                    self.dead_letter(key, meta, seq, env, error, 1)?;
                }
            },
            TurnResult::DeadLetter { error, attempts } => {
                if let Some(to) = answer_to(&env) {
                    out.replies.push((to, Err(error.clone()), None, trace));
                }
                self.dead_letter(key, meta, seq, env, error, attempts)?;
            }
        }
        Ok(())
    }

    /// The turn's history record (and the state after it), in this commit; the record
    /// that falls out of the actor's retention goes. Also moves the actor to the step
    /// the turn named.
    fn record_turn(
        &mut self,
        key: &str,
        meta: &mut ActorMeta,
        seq: u64,
        env: &Envelope,
        ran: &Ran,
    ) -> R<()> {
        let keep = self.history;
        let new_state = match &ran.result {
            TurnResult::Done { state, .. } if !state.is_empty() => Some(state.as_slice()),
            _ => None,
        };
        let size = ran
            .staged
            .map(|r| r.len)
            .or(new_state.map(|s| s.len() as u64));
        let mut rec = TurnRecord::new(self.now, ran.took_us, env, &ran.result, size);
        rec.trace = env.trace.map(|t| t.turn(key, seq));
        if let Some(step) = &rec.step
            && meta.step.as_ref() != Some(step)
        {
            meta.step = Some(step.clone());
        }
        if !keep.is_on() {
            return Ok(());
        }
        let state = new_state.filter(|s| s.len() <= STATE_LIMIT && keep.states > 0);
        if state.is_some() {
            rec.state = StateMark::Kept;
        }
        self.tables.put_history(key, meta, seq, &rec, state, keep)
    }

    fn dead_letter(
        &mut self,
        key: &str,
        meta: &mut ActorMeta,
        seq: u64,
        envelope: Envelope,
        error: String,
        attempts: u32,
    ) -> R<()> {
        meta.dead_letters += 1;
        let dl = DeadLetter {
            envelope,
            error,
            attempts,
            at_ms: self.now,
        };
        self.tables.put_dead(key, seq, &dl)
    }

    fn set_timer(
        &mut self,
        key: &str,
        meta: &mut ActorMeta,
        name: &str,
        due: UnixMs,
        payload: &[u8],
    ) -> R<()> {
        match self.tables.timer_due(key, name)? {
            Some(old_due) => {
                self.tables.take_timer(old_due, key, name)?;
                self.notices.push(Notice::TimerGone((
                    old_due,
                    key.to_owned(),
                    name.to_owned(),
                )));
            }
            // The per-actor limit was decided when the turn ran (the guest heard a
            // refusal then); a timer the turn was told it has is always stored.
            None => meta.timers += 1,
        }
        self.tables.put_timer(due, key, name, payload)?;
        self.notices.push(Notice::TimerSet {
            key: (due, key.to_owned(), name.to_owned()),
            payload: payload.to_vec(),
        });
        Ok(())
    }

    fn cancel_timer(&mut self, key: &str, meta: &mut ActorMeta, name: &str) -> R<()> {
        if let Some(due) = self.tables.timer_due(key, name)? {
            self.tables.take_timer(due, key, name)?;
            meta.timers = meta.timers.saturating_sub(1);
            self.notices
                .push(Notice::TimerGone((due, key.to_owned(), name.to_owned())));
        }
        Ok(())
    }

    fn cancel_all_timers(&mut self, key: &str, meta: &mut ActorMeta) -> R<()> {
        for name in self.tables.timer_names(key)? {
            self.cancel_timer(key, meta, &name)?;
        }
        Ok(())
    }

    /// Move every timer due at or before `now` (at most `max`) into its actor's mailbox.
    /// On a cluster node, only its own actors' timers (returns how many it fired).
    pub fn fire_timers(&mut self, now: UnixMs, max: usize) -> R<usize> {
        let due = self.tables.due_timers(now, max)?;
        let mut fired = 0;
        for (d, actor_key, name) in &due {
            if let Some(p) = &self.config.placement
                && !p.local_key(actor_key)
            {
                continue;
            }
            self.fire_one(*d, actor_key, name)?;
            fired += 1;
        }
        Ok(fired)
    }

    /// Move inbox messages `ids` into the mailboxes of the actors they are for (this
    /// node's: others are left for their owner). A message another transaction took is
    /// skipped: each is delivered exactly once. Returns how many were delivered.
    pub fn deliver_inbox(&mut self, ids: &[u64]) -> R<usize> {
        let mut delivered = 0;
        for id in ids {
            let Some((key, env)) = self.tables.take_inbox(*id)? else {
                continue;
            };
            let Some(actor) = ActorId::from_storage_key(&key) else {
                tracing::warn!(%key, "an inbox message for no valid actor was dropped");
                continue;
            };
            if !self.config.local(&actor) {
                // Moved away meanwhile: back for its new owner.
                self.tables.put_inbox(&key, &env)?;
                continue;
            }
            self.enqueue_or_log(&actor, &env)?;
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Move one timer into its actor's mailbox, if it is still pending; `true` if it was.
    pub fn fire_one(&mut self, due: UnixMs, actor_key: &str, name: &str) -> R<bool> {
        let Some(payload) = self.tables.take_timer(due, actor_key, name)? else {
            return Ok(false);
        };
        self.notices.push(Notice::TimerGone((
            due,
            actor_key.to_owned(),
            name.to_owned(),
        )));
        let Some(actor) = ActorId::from_storage_key(actor_key) else {
            return Ok(true);
        };
        let env = Envelope {
            kind: MessageKind::Timer {
                name: name.to_owned(),
            },
            body: payload,
            enqueued_ms: self.now,
            trace: None,
        };
        let ack = self.enqueue_with(&actor, &env, |m| {
            m.timers = m.timers.saturating_sub(1);
            true
        })?;
        if !matches!(ack, EnqueueAck::Accepted { .. }) {
            tracing::debug!(%actor, ?ack, "timer of an inactive actor dropped");
        }
        Ok(true)
    }

    /// Remove a pending timer whose turn is being committed inline.
    fn take_timer(&mut self, due: UnixMs, key: &str, name: &str, meta: &mut ActorMeta) -> R<()> {
        if self.tables.take_timer(due, key, name)?.is_some() {
            meta.timers = meta.timers.saturating_sub(1);
        }
        Ok(())
    }

    fn outbox_add(&mut self, delivery: Delivery) -> R<u128> {
        let id: u128 = rand::random();
        let entry = OutboxEntry {
            delivery,
            due_ms: self.now,
            attempts: 0,
            created_ms: self.now,
            last_error: None,
        };
        self.tables.put_outbox(id, &entry)?;
        self.notices.push(Notice::Outbox);
        Ok(id)
    }

    /// Record the outcome of one delivery attempt.
    pub fn outbox_update(&mut self, id: u128, update: OutboxUpdate) -> R<()> {
        let Some(mut entry) = self.tables.take_outbox(id)? else {
            return Ok(());
        };
        entry.attempts += 1;
        match update {
            OutboxUpdate::Retry { due, error } => {
                entry.due_ms = due;
                entry.last_error = Some(error);
                if let Delivery::Callback { request, .. } = &entry.delivery {
                    let attempts = entry.attempts;
                    self.callback_status(*request, CallbackStatus::Pending { attempts })?;
                }
                self.tables.put_outbox(id, &entry)?;
                self.notices.push(Notice::Outbox);
            }
            OutboxUpdate::Finish { result, callback } => match &entry.delivery {
                Delivery::Http { actor, spec } => {
                    let key = actor.storage_key();
                    if self.tables.http_pending(&key, &spec.call_id)? == Some(id) {
                        self.tables.remove_http_pending(&key, &spec.call_id)?;
                    }
                    if let Some(env) = result {
                        self.enqueue_or_log(actor, &env)?;
                    }
                }
                Delivery::Callback { request, .. } => {
                    if let Some(status) = callback {
                        self.callback_status(*request, status)?;
                    }
                }
            },
        }
        Ok(())
    }

    fn callback_status(&mut self, request: u128, status: CallbackStatus) -> R<()> {
        let Some(mut rec) = self.tables.request(request)? else {
            return Ok(());
        };
        rec.callback = Some(status);
        self.tables.put_request(request, &rec)
    }

    /// Forget idempotency keys that expired by `now` (at most `max`), oldest first.
    pub fn purge(&mut self, now: UnixMs, max: usize) -> R<usize> {
        let expired = self.tables.expiring(now, max)?;
        for (at, tenant, key) in &expired {
            self.tables.forget_expiry(*at, tenant, key)?;
            if self
                .tables
                .idempotency(tenant, key)?
                .is_some_and(|r| r.expires_ms == *at)
            {
                self.tables.remove_idempotency(tenant, key)?;
            }
        }
        Ok(expired.len())
    }
}

/// Who waits for an answer to this message: a request's caller or an asking actor.
fn answer_to(env: &Envelope) -> Option<ReplyTo> {
    match &env.kind {
        MessageKind::Request { request } => Some(ReplyTo::Request(*request)),
        MessageKind::Ask { from, correlation } => Some(ReplyTo::Actor {
            actor: from.clone(),
            correlation: correlation.clone(),
        }),
        _ => None,
    }
}

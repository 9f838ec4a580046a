//! The runner of one actor: take a batch — pending mailbox messages, then calls and
//! events handed over in memory by ingress — run their turns back to back on the
//! evolving state (each turn on a warm instance from the pool), and commit all outcomes in
//! one store operation. An in-memory message is committed together with its turn (see
//! `store::InlineTurn`), so a quick call costs one commit, not two. Replies and other
//! effects leave only after that commit (the store's post-commit hook releases them).
//! Long because a batch's life (take, run, hand to the writer, fall back, retry) is one
//! state machine, kept in one place.
//!
//! Between batches the runner remembers its actor's meta and state as committed, and
//! reads the store again only when durable mail was announced or a commit did not apply
//! as run. Commits are pipelined one deep: while batch N is with the writer, batch N+1
//! runs on the state N will leave and is submitted behind it; if N does not apply as
//! run, the writer's check makes N+1 fall back too, and the runner reads the store. A
//! runner with nothing left to do waits for its last commit before it retires, but a
//! message arriving meanwhile is run at once rather than after that commit.
//!
//! Failure policy: a trap (or time/memory breach) discards that turn; the turns before it
//! are committed, the message is retried after a backoff, and after the policy's attempts
//! it is dead-lettered with the trap's text. An in-memory message whose turn traps is
//! enqueued instead, so its retries take the same path. A guest error (the guest refusing
//! the message) is dead-lettered at once.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::history::{Retention, STATE_LIMIT};
use crate::domain::{
    ActorId, ActorStatus, Effect, MessageKind, TimerNames, TraceParent, TurnResult,
};
use crate::executor::{TurnExec, TurnInput};
use crate::store::{self, ActorMeta, CommittedTurn, EnqueueAck, Expect, InlineTurn, PendingBatch};

use super::Inner;
use super::scheduler::{Inbound, Start};
use super::warm::PoolKey;

/// A batch whose turns run longer than this (not counting waits for a CPU slot) makes ingress enqueue the actor's next
/// messages durably instead of handing them to its runner.
const KEEPS_UP: Duration = Duration::from_millis(20);

/// What a runner knows of its actor as last committed.
struct Known {
    meta: ActorMeta,
    state: Option<Vec<u8>>,
    timers: Arc<TimerNames>,
}

/// An actor has new durable mail: start its runner, or tell the running one.
pub(super) fn wake(inner: &Arc<Inner>, actor: ActorId) {
    if inner.scheduler.notify(&actor) == Start::Runner {
        inner.rt.spawn(run_actor(inner.clone(), actor));
    }
}

/// Hand a call or event to its actor's runner in memory (see [`Scheduler::offer`]),
/// starting the runner when the actor was idle.
///
/// [`Scheduler::offer`]: super::scheduler::Scheduler::offer
pub(super) fn offer(inner: &Arc<Inner>, msg: Inbound) -> Result<(), Box<Inbound>> {
    let actor = msg.req.actor.clone();
    if inner.scheduler.offer(msg)? == Start::Runner {
        inner.rt.spawn(run_actor(inner.clone(), actor));
    }
    Ok(())
}

/// Whether this node may run `actor` (a cluster node: it holds its partition).
fn placement_allows(inner: &Inner, actor: &ActorId) -> bool {
    inner
        .config
        .placement
        .as_ref()
        .is_none_or(|p| p.local(actor))
}

async fn run_actor(inner: Arc<Inner>, actor: ActorId) {
    let Ok(_permit) = inner.scheduler.permits.clone().acquire_owned().await else {
        return;
    };
    let Some(tenant) = inner.tenants.get(&actor.tenant) else {
        // An actor of a deleted tenant never runs again (its data is being purged); a
        // message handed over in memory (a due timer) stays where it is until then.
        loop {
            let (inbox, _) = inner.scheduler.take(&actor, usize::MAX);
            for m in inbox {
                let _ = m.done.send(Ok(EnqueueAck::UnknownModule));
            }
            if inner.scheduler.retire(&actor) {
                return;
            }
        }
    };
    let exec = Exec {
        limits: tenant.limits.clone(),
        tenant_permits: Some(tenant.turn_permits.clone()),
        history: tenant.quotas.retention(inner.config.history_states),
        // Resolved once per runner, not per turn.
        counted: inner.metrics.turns_of(&tenant.name, &actor.module),
    };
    let max = inner.config.batch_per_actor.max(1);
    let mut known: Option<Known> = None;
    // The last batch's commit, still in the writer's hands while the next batch runs
    // (its turns build on the state that commit will leave).
    let mut inflight: Option<InFlight> = None;
    loop {
        if !placement_allows(&inner, &actor) {
            // Its partition moved to another node: what was handed over in memory is
            // refused (callers retry through the new owner); durable mail stays for it.
            settle(&mut inflight).await;
            let (inbox, _) = inner.scheduler.take(&actor, usize::MAX);
            for m in inbox {
                let _ = m
                    .done
                    .send(Err(store::Error::Backend(dwell_storage::Error::Fenced)));
            }
            if inner.scheduler.retire(&actor) {
                return;
            }
            continue;
        }
        let (inbox, more) = inner.scheduler.take(&actor, max);
        if more {
            known = None;
        }
        if known.is_none() {
            // About to read the store: it must hold everything this runner submitted.
            settle(&mut inflight).await;
        }
        let loaded = match known.take() {
            Some(k) => Ok(Some(PendingBatch {
                meta: k.meta,
                state: k.state,
                messages: Vec::new(),
                timers: k.timers,
            })),
            None => inner.store.pending(&actor, max),
        };
        let (batch, fresh) = match loaded {
            Ok(Some(b)) => (b, false),
            Ok(None) if inbox.is_empty() => {
                // The actor is gone (deleted), or never was.
                if inner.scheduler.retire(&actor) {
                    return;
                }
                continue;
            }
            Ok(None) => match new_actor(&inner, &actor) {
                Some(b) => (b, true),
                None => {
                    for m in inbox {
                        let _ = m.done.send(Ok(EnqueueAck::UnknownModule));
                    }
                    continue;
                }
            },
            Err(e) => {
                tracing::error!(%actor, error = %e, "cannot read mailbox; retrying");
                // The callers hear the kind (a store being reopened or unreachable is
                // 503, retry; only a bad record is internal).
                for m in inbox {
                    let _ = m.done.send(Err(e.clone()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if batch.messages.is_empty() && inbox.is_empty() {
            if let Some(rx) = inflight.as_mut() {
                // Hear back before retiring: the next runner of this actor reads the
                // store, which must hold this commit. Unless something arrives first:
                // then run it on the state that commit will leave.
                let wake = inner.scheduler.waker(&actor);
                let arrived = async {
                    match &wake {
                        Some(w) => w.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    answer = rx => {
                        inflight = None;
                        let (ok, meta) = answered(answer);
                        known = match meta {
                            Some(meta) if ok && !fresh => Some(Known {
                                meta,
                                state: batch.state,
                                timers: batch.timers,
                            }),
                            _ => None,
                        };
                    }
                    _ = arrived => {
                        known = (!fresh).then_some(Known {
                            meta: batch.meta,
                            state: batch.state,
                            timers: batch.timers,
                        });
                    }
                }
                continue;
            }
            if !fresh {
                known = Some(Known {
                    meta: batch.meta,
                    state: batch.state,
                    timers: batch.timers,
                });
            }
            if inner.scheduler.retire(&actor) {
                return;
            }
            continue;
        }
        // A full batch may have left mail behind: read the mailbox again next time.
        let full = batch.messages.len() >= max;
        let backlog = !batch.messages.is_empty();
        let mut busy = Duration::ZERO;
        let prepared = run_batch(&inner, &actor, batch, inbox, fresh, &exec, &mut busy).await;
        // Keeping up: no mailbox backlog, every turn went through, and quickly.
        let clean = matches!(&prepared, Ok(Some(p)) if p.clean);
        inner
            .scheduler
            .keeps_up(&actor, clean && !backlog && busy < KEEPS_UP);
        let p = match prepared {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(%actor, error = %e, "cannot commit turns; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let submitted = inner
            .store
            .submit_batch(
                actor.clone(),
                p.turns,
                p.inline,
                Some(p.expect),
                exec.history,
            )
            .await;
        // The previous commit is ahead of this one in the writer's queue; if it did not
        // apply as run, neither will this one (the writer checks), and the runner must
        // read the store again.
        let (previous_ok, _) = settle(&mut inflight).await;
        inflight = match submitted {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::error!(%actor, error = %e, "cannot commit turns; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if !(previous_ok && p.clean) || full {
            continue;
        }
        known = match p.meta {
            Some(meta) => Some(Known {
                meta,
                state: p.state,
                timers: p.timers,
            }),
            // A new actor: its creation time comes from the writer.
            None => match settle(&mut inflight).await {
                (true, Some(meta)) => Some(Known {
                    meta,
                    state: p.state,
                    timers: p.timers,
                }),
                _ => None,
            },
        };
    }
}

/// The batch of an actor that does not exist yet: its first message creates it, pinned
/// to the module's latest version. `None` if there is no such module.
fn new_actor(inner: &Inner, actor: &ActorId) -> Option<PendingBatch> {
    let latest = inner.registry.latest(&actor.tenant, &actor.module)?;
    Some(PendingBatch {
        meta: ActorMeta {
            module: actor.module.clone(),
            digest: latest.digest,
            version: latest.version,
            status: ActorStatus::Active,
            head_seq: 0,
            turns: 0,
            dead_letters: 0,
            created_ms: 0,
            updated_ms: 0,
            timers: 0,
            step: None,
            history: Default::default(),
        },
        state: None,
        messages: Vec::new(),
        timers: Arc::default(),
    })
}

/// What a runner needs to run its actor's turns.
struct Exec {
    limits: Arc<crate::domain::Limits>,
    tenant_permits: Option<Arc<tokio::sync::Semaphore>>,
    /// The history the tenant keeps.
    history: Retention,
    /// This actor's tenant and module's turn counters.
    counted: crate::metrics::TurnCounters,
}

/// How one turn went, as the runner records it.
enum Ran {
    Done(Vec<u8>, Vec<Effect>),
    Refused(String, Option<crate::domain::RefusalCode>),
    Trapped(String),
}

/// What a refusal commits: a classified one answers the message (its caller gets the
/// refusal); an unclassified one is a failure and dead-letters it.
fn refusal(error: String, code: Option<crate::domain::RefusalCode>, attempts: u32) -> TurnResult {
    match code {
        Some(refusal) => TurnResult::Refused { error, refusal },
        None => TurnResult::DeadLetter {
            error: format!("refused by the actor: {error}"),
            attempts,
        },
    }
}

/// Run one batch's turns. Returns the batch to commit, or `None` if there is nothing
/// (left) to commit. Adds the time its turns ran to `busy`.
#[allow(clippy::too_many_arguments)]
async fn run_batch(
    inner: &Arc<Inner>,
    actor: &ActorId,
    batch: PendingBatch,
    inbox: Vec<Inbound>,
    fresh: bool,
    exec: &Exec,
    busy: &mut Duration,
) -> Result<Option<Prepared>, store::Error> {
    let key = PoolKey {
        tenant: actor.tenant.clone(),
        digest: batch.meta.digest.clone(),
    };
    let mut status = batch.meta.status;
    let module = if status == ActorStatus::Active {
        match inner
            .registry
            .compiled(&batch.meta.digest, &inner.store, &inner.executor)
            .await
        {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(%actor, error = %e, "module unavailable; dead-lettering batch");
                let turns: Vec<CommittedTurn> = batch
                    .messages
                    .iter()
                    .map(|(seq, _)| CommittedTurn {
                        seq: *seq,
                        result: TurnResult::DeadLetter {
                            error: format!("module unavailable: {e}"),
                            attempts: 0,
                        },
                        took_us: 0,
                    })
                    .collect();
                // In-memory messages are only enqueued: they meet the same fate there.
                let inline = not_run(inbox);
                turns.iter().for_each(|t| exec.counted.count(&t.result));
                inner
                    .store
                    .commit_batch(actor.clone(), turns, inline, None, exec.history)
                    .await?;
                return Ok(None);
            }
        }
    } else {
        None
    };

    let mut state = batch.state;
    // The actor's pending timers as each turn sees them: exact, from the store and the
    // effects of the turns before (a turn that sets one past the limit is refused then).
    let mut timers = batch.timers;
    let mut head = batch.meta.head_seq;
    let mut done: Vec<CommittedTurn> = Vec::with_capacity(batch.messages.len());
    for (seq, envelope) in batch.messages {
        head = seq + 1;
        let Some(module) = module.as_ref().filter(|_| status == ActorStatus::Active) else {
            done.push(CommittedTurn {
                seq,
                result: TurnResult::DeadLetter {
                    error: format!("the process of actor {actor} is complete"),
                    attempts: 0,
                },
                took_us: 0,
            });
            continue;
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (ran, took) = turn(
                inner,
                exec,
                module,
                &key,
                actor,
                seq,
                &state,
                &envelope,
                timers.clone(),
            )
            .await;
            *busy += took;
            let took_us = took.as_micros() as u64;
            match ran {
                Ran::Done(new_state, effects) => {
                    count_effects(&effects, &mut status, &mut timers);
                    state = Some(new_state);
                    done.push(CommittedTurn {
                        seq,
                        // The snapshot is filled in below (see `mark_last_state`).
                        result: TurnResult::Done {
                            state: Vec::new(),
                            effects,
                        },
                        took_us,
                    });
                    mark_last_state(&mut done, &state, exec.history.states > 0);
                    break;
                }
                Ran::Refused(error, code) => {
                    tracing::info!(%actor, seq, %error, ?code, "guest refused a message");
                    done.push(CommittedTurn {
                        seq,
                        result: refusal(error, code, attempt),
                        took_us,
                    });
                    break;
                }
                Ran::Trapped(error) => {
                    tracing::warn!(%actor, seq, attempt, %error, "turn failed");
                    match inner.config.retry.backoff_after(attempt) {
                        None => {
                            done.push(CommittedTurn {
                                seq,
                                result: TurnResult::DeadLetter {
                                    error,
                                    attempts: attempt,
                                },
                                took_us,
                            });
                            break;
                        }
                        Some(wait) => {
                            // Release what earlier turns produced before backing off.
                            if !done.is_empty() {
                                let turns = std::mem::take(&mut done);
                                turns.iter().for_each(|t| exec.counted.count(&t.result));
                                inner
                                    .store
                                    .commit_turns(actor.clone(), turns, exec.history)
                                    .await?;
                            }
                            let until = inner.clock.now_ms() + wait.as_millis() as u64;
                            inner.clock.sleep_until(until).await;
                        }
                    }
                }
            }
        }
    }

    // The in-memory messages, on the state the mailbox turns left. The first that traps
    // (and every one after it) is only enqueued: it is retried from the mailbox.
    let mut inline: Vec<InlineTurn> = Vec::with_capacity(inbox.len());
    let mut last_done: Option<usize> = None;
    let mut stop = false;
    let keep_states = exec.history.states > 0;
    for m in inbox {
        let module = module.as_ref().filter(|_| status == ActorStatus::Active);
        let mut took_us = 0;
        let result = match module {
            Some(module) if !stop => {
                // A due timer handed over in memory fires in this commit: it is no longer
                // pending for its own turn.
                if let (Some(_), MessageKind::Timer { name }) = (m.timer, &m.req.envelope.kind)
                    && timers.contains(name)
                {
                    Arc::make_mut(&mut timers).remove(name);
                }
                let (ran, took) = turn(
                    inner,
                    exec,
                    module,
                    &key,
                    actor,
                    // Its sequence number if it commits inline, as run.
                    head + inline.len() as u64,
                    &state,
                    &m.req.envelope,
                    timers.clone(),
                )
                .await;
                *busy += took;
                took_us = took.as_micros() as u64;
                match ran {
                    Ran::Done(new_state, effects) => {
                        count_effects(&effects, &mut status, &mut timers);
                        // Each turn's state goes to its history record when it is kept;
                        // the last one's is filled in below in any case.
                        let carried = if keep_states && new_state.len() <= STATE_LIMIT {
                            new_state.clone()
                        } else {
                            Vec::new()
                        };
                        state = Some(new_state);
                        last_done = Some(inline.len());
                        Some(TurnResult::Done {
                            state: carried,
                            effects,
                        })
                    }
                    Ran::Refused(error, code) => {
                        tracing::info!(%actor, %error, ?code, "guest refused a message");
                        Some(refusal(error, code, 1))
                    }
                    Ran::Trapped(error) => {
                        tracing::warn!(%actor, %error, "turn failed; the message goes to the mailbox");
                        stop = true;
                        None
                    }
                }
            }
            _ => None,
        };
        inline.push(InlineTurn {
            req: m.req,
            timer: m.timer,
            result,
            took_us,
            done: m.done,
        });
    }
    if let (Some(i), Some(s)) = (last_done, &state)
        && let Some(TurnResult::Done { state: slot, .. }) = &mut inline[i].result
    {
        slot.clone_from(s);
    }

    if done.is_empty() && inline.is_empty() {
        return Ok(None);
    }
    let results = done.iter().map(|t| &t.result);
    results
        .chain(inline.iter().filter_map(|it| it.result.as_ref()))
        .for_each(|r| exec.counted.count(r));
    let expect = Expect {
        head_seq: head,
        created_ms: (!fresh).then_some(batch.meta.created_ms),
        digest: batch.meta.digest.clone(),
    };
    let clean = !stop && inline.iter().all(|it| it.result.is_some());
    // The meta the commit will leave if it applies as run (the writer's is the truth;
    // a brand-new actor's creation time is known only from it).
    let meta = (!fresh).then(|| {
        let mut meta = batch.meta;
        meta.head_seq = head + inline.len() as u64;
        meta.status = status;
        meta.timers = timers.len() as u32;
        meta
    });
    Ok(Some(Prepared {
        turns: done,
        inline,
        expect,
        state,
        meta,
        timers,
        clean,
    }))
}

/// A batch whose turns have run, ready to commit.
struct Prepared {
    turns: Vec<CommittedTurn>,
    inline: Vec<InlineTurn>,
    expect: Expect,
    /// The state after the batch.
    state: Option<Vec<u8>>,
    /// The actor's meta after the batch, if the runner can tell without the writer.
    meta: Option<ActorMeta>,
    /// The actor's pending timers after the batch.
    timers: Arc<TimerNames>,
    /// Every in-memory message ran (none is only to be enqueued).
    clean: bool,
}

/// A submitted commit the runner has not heard back from.
type InFlight = tokio::sync::oneshot::Receiver<Result<store::TurnsAck, store::Error>>;

/// Wait for the commit in flight, if any. Returns whether everything the runner assumed
/// about it holds (it committed and its inline turns applied as run), and the actor's
/// meta as the writer left it.
async fn settle(inflight: &mut Option<InFlight>) -> (bool, Option<ActorMeta>) {
    let Some(rx) = inflight.take() else {
        return (true, None);
    };
    answered(rx.await)
}

/// See [`settle`].
fn answered(
    answer: Result<Result<store::TurnsAck, store::Error>, tokio::sync::oneshot::error::RecvError>,
) -> (bool, Option<ActorMeta>) {
    match answer {
        Ok(Ok(ack)) => (ack.inline_applied, ack.meta),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a batch of turns failed to commit");
            (false, None)
        }
        Err(_) => (false, None),
    }
}

/// Run one turn on the actor's current state, holding its fair share of the CPU and, for
/// just that long, a warm instance of its module from the pool (so instances in use never
/// outnumber the CPU slots). Also returns how long it ran (not counting the wait for a
/// CPU slot).
#[allow(clippy::too_many_arguments)]
async fn turn(
    inner: &Arc<Inner>,
    exec: &Exec,
    module: &Arc<crate::executor::CompiledModule>,
    key: &PoolKey,
    actor: &ActorId,
    seq: u64,
    state: &Option<Vec<u8>>,
    envelope: &crate::domain::Envelope,
    timers: Arc<TimerNames>,
) -> (Ran, Duration) {
    let input = TurnInput {
        actor,
        now_ms: inner.clock.now_ms(),
        state: state.as_deref(),
        envelope,
        timers,
        limits: exec.limits.clone(),
    };
    // Fair share of the CPU: a turn runs only while holding one of its tenant's
    // `concurrent_turns` permits and one of the node's execution slots (one per core). A
    // tenant flooding its actors queues behind itself, and never holds every slot unless
    // its quota allows it.
    let _tenant_slot = match &exec.tenant_permits {
        Some(p) => p.clone().acquire_owned().await.ok(),
        None => None,
    };
    let _slot = inner
        .scheduler
        .exec_slots
        .clone()
        .acquire_owned()
        .await
        .ok();
    let started = std::time::Instant::now();
    let mut warm = inner.warm.take(key);
    let outcome = if inner.scheduler.quick(actor) {
        inner.executor.run_turn(module, &mut warm, input).await
    } else {
        // A slow module's turn runs on the slow lane (see `lanes`), with owned inputs.
        let (executor, module) = (inner.executor.clone(), module.clone());
        let (actor, state, envelope) = (actor.clone(), state.clone(), envelope.clone());
        let (now_ms, limits, timers) = (input.now_ms, input.limits.clone(), input.timers.clone());
        let ran = super::lanes::run_slow(async move {
            let input = TurnInput {
                actor: &actor,
                now_ms,
                state: state.as_deref(),
                envelope: &envelope,
                timers,
                limits,
            };
            let outcome = executor.run_turn(&module, &mut warm, input).await;
            (outcome, warm)
        })
        .await;
        match ran {
            Ok((outcome, back)) => {
                warm = back;
                outcome
            }
            Err(e) => {
                warm = None;
                TurnExec::Trapped(e)
            }
        }
    };
    // A trapped instance did not come back; a healthy one returns to the pool.
    if let Some(w) = warm {
        inner.warm.put(key.clone(), w);
    }
    let took = started.elapsed();
    inner.scheduler.record_turn(actor, took);
    inner.metrics.turn_seconds.observe(took.as_secs_f64());
    let ran = match outcome {
        TurnExec::Done { state, effects } => Ran::Done(state, effects),
        TurnExec::Refused(e, code) => Ran::Refused(e, code),
        TurnExec::Trapped(e) => Ran::Trapped(e),
    };
    if let Some(parent) = envelope.trace
        && crate::trace::enabled()
    {
        turn_span(actor, seq, parent, took, &ran);
    }
    (ran, took)
}

/// Export a turn as a span under the message's trace context, with the id the writer
/// gives the turn's context (`TraceParent::turn`).
fn turn_span(actor: &ActorId, seq: u64, parent: TraceParent, took: Duration, ran: &Ran) {
    use crate::trace::{Attribute, Finished, Kind};
    let (outcome, error) = match ran {
        Ran::Done(..) => ("ok", None),
        Ran::Refused(e, _) => ("refused", Some(e.clone())),
        Ran::Trapped(e) => ("trapped", Some(e.clone())),
    };
    crate::trace::export(Finished {
        name: format!("turn {}", actor.module),
        kind: Kind::Internal,
        context: parent.turn(&actor.storage_key(), seq),
        parent: Some(parent.span_id),
        took,
        attributes: vec![
            Attribute::new("dwell.tenant", actor.tenant.0.clone()),
            Attribute::new("dwell.module", actor.module.clone()),
            Attribute::new("dwell.actor", actor.key.clone()),
            Attribute::new("dwell.seq", seq as i64),
            Attribute::new("dwell.outcome", outcome),
        ],
        error,
    });
}

/// What a turn's effects change in the runner's view of its actor.
fn count_effects(effects: &[Effect], status: &mut ActorStatus, timers: &mut Arc<TimerNames>) {
    for e in effects {
        match e {
            Effect::Complete => *status = ActorStatus::Completed,
            Effect::SetTimer { name, .. } if !timers.contains(name) => {
                Arc::make_mut(timers).insert(name.clone());
            }
            Effect::CancelTimer { name } if timers.contains(name) => {
                Arc::make_mut(timers).remove(name);
            }
            _ => {}
        }
    }
}

/// In-memory messages that were not run: the writer only enqueues them.
fn not_run(inbox: Vec<Inbound>) -> Vec<InlineTurn> {
    inbox
        .into_iter()
        .map(|m| InlineTurn {
            req: m.req,
            timer: m.timer,
            result: None,
            took_us: 0,
            done: m.done,
        })
        .collect()
}

/// The last successful turn of a commit carries the state snapshot; the one before it
/// gives its copy up unless the history keeps states (`keep`) and it is small enough to
/// be kept. The writer stores the last non-empty snapshot of a batch, and keeps each
/// turn's with its history record.
fn mark_last_state(done: &mut [CommittedTurn], state: &Option<Vec<u8>>, keep: bool) {
    let Some(state) = state else { return };
    let mut dones = done.iter_mut().rev().filter_map(|t| match &mut t.result {
        TurnResult::Done { state, .. } => Some(state),
        TurnResult::DeadLetter { .. } | TurnResult::Refused { .. } => None,
    });
    if let Some(last) = dones.next() {
        last.clone_from(state);
    }
    if let Some(previous) = dones.next()
        && (!keep || previous.len() > STATE_LIMIT)
    {
        *previous = Vec::new();
    }
}

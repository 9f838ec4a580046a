//! The runner of one actor: load a batch of pending messages, run their turns back to
//! back on the evolving state (a warm instance serves the whole batch), and commit all
//! outcomes in one store operation. Replies and other effects leave only after that
//! commit (the store's post-commit hook releases them).
//!
//! Failure policy: a trap (or time/memory breach) discards that turn; the turns before it
//! are committed, the message is retried after a backoff, and after the policy's attempts
//! it is dead-lettered with the trap's text. A guest error (the guest refusing the
//! message) is dead-lettered at once.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{ActorId, ActorStatus, Effect, TurnResult};
use crate::executor::{TurnExec, TurnInput, Warm};
use crate::store::CommittedTurn;

use super::Inner;

pub(super) async fn run_actor(inner: Arc<Inner>, actor: ActorId) {
    let Ok(_permit) = inner.scheduler.permits.clone().acquire_owned().await else {
        return;
    };
    let tenant = inner.tenants.get(&actor.tenant);
    let permits = tenant.as_ref().map(|t| t.turn_permits.clone());
    let limits = tenant
        .map(|t| t.limits.clone())
        .unwrap_or_else(|| Arc::new(inner.config.limits.clone()));
    let exec = Exec {
        limits,
        tenant_permits: permits,
    };
    let mut warm: Option<Warm> = inner.warm.take(&actor);
    loop {
        let batch = match inner.store.pending(&actor, inner.config.batch_per_actor) {
            Ok(Some(b)) => b,
            Ok(None) => {
                // The actor is gone (deleted): its instance goes with it.
                if inner.scheduler.retire(&actor) {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(%actor, error = %e, "cannot read mailbox; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if batch.messages.is_empty() {
            // Park the instance before retiring, so a runner started right after finds it.
            if let Some(w) = warm.take() {
                inner.warm.put(&actor, w);
            }
            if inner.scheduler.retire(&actor) {
                return;
            }
            warm = inner.warm.take(&actor);
            continue;
        }
        if let Err(e) = run_batch(&inner, &actor, batch, &mut warm, &exec).await {
            tracing::error!(%actor, error = %e, "cannot commit turns; retrying");
            warm = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What a runner needs to run its actor's turns.
struct Exec {
    limits: Arc<crate::domain::Limits>,
    tenant_permits: Option<Arc<tokio::sync::Semaphore>>,
}

async fn run_batch(
    inner: &Arc<Inner>,
    actor: &ActorId,
    batch: crate::store::PendingBatch,
    warm: &mut Option<Warm>,
    exec: &Exec,
) -> Result<(), crate::store::Error> {
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
                let turns = batch
                    .messages
                    .iter()
                    .map(|(seq, _)| CommittedTurn {
                        seq: *seq,
                        result: TurnResult::DeadLetter {
                            error: format!("module unavailable: {e}"),
                            attempts: 0,
                        },
                    })
                    .collect();
                return inner.store.commit_turns(actor.clone(), turns).await;
            }
        }
    } else {
        None
    };

    let mut state = batch.state;
    // Pending timers as the turns see them (approximate within a batch: the writer
    // enforces the exact limit).
    let mut timers = batch.meta.timers;
    let mut done: Vec<CommittedTurn> = Vec::with_capacity(batch.messages.len());
    for (seq, envelope) in batch.messages {
        let Some(module) = module.as_ref().filter(|_| status == ActorStatus::Active) else {
            done.push(CommittedTurn {
                seq,
                result: TurnResult::DeadLetter {
                    error: format!("the process of actor {actor} is complete"),
                    attempts: 0,
                },
            });
            continue;
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let input = TurnInput {
                actor,
                now_ms: inner.clock.now_ms(),
                state: state.as_deref(),
                envelope: &envelope,
                timers,
                limits: exec.limits.clone(),
            };
            // Fair share of the CPU: a turn runs only while holding one of its tenant's
            // `concurrent_turns` permits and one of the node's execution slots (one per
            // core). A tenant flooding its actors queues behind itself, and never holds
            // every slot unless its quota allows it.
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
            let outcome = inner.executor.run_turn(module, warm, input).await;
            drop(_slot);
            drop(_tenant_slot);
            match outcome {
                TurnExec::Done {
                    state: new_state,
                    effects,
                } => {
                    for e in &effects {
                        match e {
                            Effect::Complete => status = ActorStatus::Completed,
                            Effect::SetTimer { .. } => timers += 1,
                            Effect::CancelTimer { .. } => timers = timers.saturating_sub(1),
                            _ => {}
                        }
                    }
                    state = Some(new_state);
                    done.push(CommittedTurn {
                        seq,
                        // The snapshot is filled in below for the last turn only.
                        result: TurnResult::Done {
                            state: Vec::new(),
                            effects,
                        },
                    });
                    mark_last_state(&mut done, &state);
                    break;
                }
                TurnExec::Refused(error) => {
                    tracing::info!(%actor, seq, %error, "guest refused a message");
                    done.push(CommittedTurn {
                        seq,
                        result: TurnResult::DeadLetter {
                            error: format!("refused by the actor: {error}"),
                            attempts: attempt,
                        },
                    });
                    break;
                }
                TurnExec::Trapped(error) => {
                    tracing::warn!(%actor, seq, attempt, %error, "turn failed");
                    *warm = None;
                    match inner.config.retry.backoff_after(attempt) {
                        None => {
                            done.push(CommittedTurn {
                                seq,
                                result: TurnResult::DeadLetter {
                                    error,
                                    attempts: attempt,
                                },
                            });
                            break;
                        }
                        Some(wait) => {
                            // Release what earlier turns produced before backing off.
                            if !done.is_empty() {
                                let turns = std::mem::take(&mut done);
                                inner.store.commit_turns(actor.clone(), turns).await?;
                            }
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
    }
    if done.is_empty() {
        return Ok(());
    }
    inner.store.commit_turns(actor.clone(), done).await
}

/// Only the last successful turn of a commit carries the state snapshot; the one before
/// it gives its copy up. The writer ignores the empty snapshots of earlier turns.
fn mark_last_state(done: &mut [CommittedTurn], state: &Option<Vec<u8>>) {
    let Some(state) = state else { return };
    let mut dones = done.iter_mut().rev().filter_map(|t| match &mut t.result {
        TurnResult::Done { state, .. } => Some(state),
        TurnResult::DeadLetter { .. } => None,
    });
    if let Some(last) = dones.next() {
        last.clone_from(state);
    }
    if let Some(previous) = dones.next() {
        *previous = Vec::new();
    }
}

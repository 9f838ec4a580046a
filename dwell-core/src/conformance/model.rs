//! The model-based test: random operation sequences through the turn core, applied to
//! the backend under test and to [`MemTables`]; after every step the answers and
//! everything observable ([`dump`]) must be the same. proptest shrinks a failure to a
//! short sequence.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::*;

#[derive(Debug, Clone)]
enum Step {
    Enqueue {
        who: (u8, u8),
        key: Option<(u8, u8)>,
        request: bool,
    },
    Commit {
        who: (u8, u8),
        outcome: u8,
        effects: Vec<u8>,
        stale: bool,
    },
    Inline {
        who: (u8, u8),
        n: u8,
        as_seen: bool,
        run: bool,
        key: Option<u8>,
    },
    Advance(u16),
    FireTimers,
    /// Fire one named timer at a due time that may be stale (the timer worker's view).
    FireOne((u8, u8), u8, u16),
    Outbox {
        pick: u8,
        retry: bool,
    },
    Purge,
    DeleteActor((u8, u8)),
    DeleteTenant(u8),
    RetryDead((u8, u8)),
}

fn who() -> impl Strategy<Value = (u8, u8)> {
    (0..2u8, 0..3u8)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (who(), proptest::option::of((0..3u8, 0..2u8)), any::<bool>())
            .prop_map(|(who, key, request)| Step::Enqueue { who, key, request }),
        5 => (who(), 0..4u8, proptest::collection::vec(0..9u8, 0..4), proptest::bool::weighted(0.1))
            .prop_map(|(who, outcome, effects, stale)| Step::Commit { who, outcome, effects, stale }),
        2 => (who(), 1..3u8, proptest::bool::weighted(0.7), proptest::bool::weighted(0.8), proptest::option::of(0..3u8))
            .prop_map(|(who, n, as_seen, run, key)| Step::Inline { who, n, as_seen, run, key }),
        2 => (1..6_000u16).prop_map(Step::Advance),
        2 => Just(Step::FireTimers),
        1 => (who(), 0..3u8, 0..4_000u16).prop_map(|(w, t, back)| Step::FireOne(w, t, back)),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, retry)| Step::Outbox { pick, retry }),
        1 => Just(Step::Purge),
        1 => who().prop_map(Step::DeleteActor),
        1 => (0..2u8).prop_map(Step::DeleteTenant),
        1 => who().prop_map(Step::RetryDead),
    ]
}

fn tenant(t: u8) -> &'static str {
    [TENANT, OTHER][t as usize % 2]
}

fn who_is((t, a): (u8, u8)) -> ActorId {
    actor(tenant(t), &format!("a{a}"))
}

/// Applies steps to one rig; every answer is returned as text to compare.
struct Driver {
    next_id: u128,
    steps: u64,
}

impl Driver {
    fn effect(&mut self, code: u8, me: &ActorId, now: UnixMs, pending: &[u128]) -> Effect {
        match code {
            0 => set_timer("t0", now + 1_000),
            1 => set_timer("t1", now + 3_000),
            2 => Effect::CancelTimer { name: "t0".into() },
            3 => http_call("c"),
            4 => Effect::Send {
                to: actor(&me.tenant.0, "a0"),
                body: b"hi".to_vec(),
            },
            5 => Effect::Ask {
                to: actor(&me.tenant.0, "a1"),
                body: b"q".to_vec(),
                correlation: "corr".into(),
            },
            6 => Effect::Complete,
            _ => match pending.first() {
                Some(id) => reply(*id, b"r"),
                None => set_timer("t2", now + 10),
            },
        }
    }

    fn apply<B: Backend>(&mut self, r: &mut Rig<B>, step: &Step) -> String {
        // Every other write starts with a prefetch of every actor (as the writer's
        // batches do): answers must not depend on it.
        self.steps += 1;
        r.prefetch = if self.steps.is_multiple_of(2) {
            (0..2)
                .flat_map(|t| (0..3).map(move |a| who_is((t, a))))
                .collect()
        } else {
            Vec::new()
        };
        match step {
            Step::Enqueue {
                who,
                key,
                request: is_request,
            } => {
                let a = who_is(*who);
                self.next_id += 1;
                let id = self.next_id;
                let mut q = req(
                    &a,
                    if *is_request {
                        request(id)
                    } else {
                        event(b"e")
                    },
                );
                if *is_request {
                    q.request = Some(NewRequest {
                        id: RequestId(id),
                        callback_url: id.is_multiple_of(3).then(|| "https://cb.test/".into()),
                    });
                }
                q.idempotency = key.map(|(k, f)| Idempotency {
                    key: format!("k{k}"),
                    expires_ms: r.now + 8_000,
                    fingerprint: [f; 32],
                });
                format!("{:?}", r.try_tx(|tx| tx.enqueue_request(q)))
            }
            Step::Commit {
                who,
                outcome,
                effects,
                stale,
            } => {
                let a = who_is(*who);
                let Some(meta) = r.meta(&a) else {
                    return "no actor".into();
                };
                let mail = r.mail(&a);
                let Some((seq, env)) = mail.first().cloned() else {
                    return "no mail".into();
                };
                let seq = if *stale { seq.saturating_sub(1) } else { seq };
                let pending: Vec<u128> = match env.kind {
                    MessageKind::Request { request } => vec![request.0],
                    _ => Vec::new(),
                };
                let result = match outcome {
                    0 => TurnResult::DeadLetter {
                        error: "trap".into(),
                        attempts: 2,
                    },
                    1 => TurnResult::Refused {
                        error: "no".into(),
                        refusal: dwell_types::RefusalCode::Conflict,
                    },
                    _ => done(
                        format!("state{}", meta.turns).as_bytes(),
                        effects
                            .iter()
                            .map(|c| self.effect(*c, &a, r.now, &pending))
                            .collect(),
                    ),
                };
                let turns = vec![CommittedTurn { seq, result, took_us: 7 }];
                format!(
                    "{:?}",
                    r.try_tx(|tx| tx.commit_turns(&a, turns, Vec::new(), None, None, HISTORY))
                        .map(|(ack, _)| ack.inline_applied)
                )
            }
            Step::Inline {
                who,
                n,
                as_seen,
                run,
                key,
            } => {
                let a = who_is(*who);
                let expect = match r.meta(&a) {
                    Some(m) => Expect {
                        head_seq: m.head_seq + u64::from(!as_seen),
                        created_ms: Some(m.created_ms),
                        digest: m.digest,
                    },
                    None => Expect {
                        head_seq: 0,
                        created_ms: None,
                        digest: if *as_seen { "d1".into() } else { "d0".into() },
                    },
                };
                let mut inline = Vec::new();
                for i in 0..*n {
                    self.next_id += 1;
                    let id = self.next_id;
                    let mut q = req(&a, request(id));
                    q.request = Some(NewRequest {
                        id: RequestId(id),
                        callback_url: None,
                    });
                    q.idempotency = key.filter(|_| i == 0).map(|k| Idempotency {
                        key: format!("k{k}"),
                        expires_ms: r.now + 8_000,
                        fingerprint: [0; 32],
                    });
                    inline.push(Inline {
                        req: q,
                        timer: None,
                        result: (*run || i == 0).then(|| {
                            done(format!("inline{id}").as_bytes(), vec![reply(id, b"ok")])
                        }),
                        took_us: 0,
                    });
                }
                format!(
                    "{:?}",
                    r.try_tx(|tx| tx.commit_turns(&a, Vec::new(), inline, Some(expect), None, HISTORY))
                        .map(|(ack, acks)| (ack.inline_applied, acks))
                )
            }
            Step::Advance(ms) => {
                r.now += u64::from(*ms);
                String::new()
            }
            Step::FireTimers => {
                let now = r.now;
                format!("{:?}", r.try_tx(|tx| tx.fire_timers(now, 100)))
            }
            Step::FireOne(who, t, back) => {
                let key = who_is(*who).storage_key();
                let name = format!("t{t}");
                // The current due time, or one it had before (stale).
                let due = r
                    .read(|tables| tables.timer_due(&key, &name))
                    .map_or(r.now, |d| {
                        d.saturating_sub(u64::from(*back % 2) * u64::from(*back))
                    });
                format!("{:?}", r.try_tx(|tx| tx.fire_one(due, &key, &name)))
            }
            Step::Outbox { pick, retry } => {
                let mut entries = r.read(|t| t.outbox_from(0, usize::MAX));
                if entries.is_empty() {
                    return "empty".into();
                }
                entries.sort_by_key(|(_, e)| format!("{e:?}"));
                let (id, _) = entries[*pick as usize % entries.len()].clone();
                let update = if *retry {
                    OutboxUpdate::Retry {
                        due: r.now + 500,
                        error: "503".into(),
                    }
                } else {
                    OutboxUpdate::Finish {
                        result: Some(event(b"result")),
                        callback: Some(dwell_types::records::CallbackStatus::Delivered {
                            attempts: 1,
                            at_ms: 0,
                        }),
                    }
                };
                format!("{:?}", r.try_tx(|tx| tx.outbox_update(id, update)))
            }
            Step::Purge => {
                let now = r.now;
                format!("{:?}", r.try_tx(|tx| tx.purge(now, 100)))
            }
            Step::DeleteActor(who) => {
                let a = who_is(*who);
                format!(
                    "{:?}",
                    r.try_tx(|tx| tx.admin(AdminOp::DeleteActor { actor: a }))
                )
            }
            Step::DeleteTenant(t) => {
                let name = tenant(*t);
                let mut out = format!(
                    "{:?}",
                    r.try_tx(|tx| tx.admin(AdminOp::DeleteTenant { name: name.into() }))
                );
                for _ in 0..50 {
                    let more = r.try_tx(|tx| {
                        tx.admin(AdminOp::PurgeTenant {
                            id: name.into(),
                            max: 4,
                        })
                    });
                    out.push_str(&format!(" {more:?}"));
                    if !matches!(more, Ok(true)) {
                        break;
                    }
                }
                out
            }
            Step::RetryDead(who) => {
                let a = who_is(*who);
                self.next_id += 1;
                let id = self.next_id;
                let Some(meta) = r.meta(&a) else {
                    return "no actor".into();
                };
                // The latest dead letter, if the actor has one at head - 1.
                let seq = meta.head_seq.saturating_sub(1);
                format!(
                    "{:?}",
                    r.try_tx(|tx| tx.admin(AdminOp::RetryDeadLetter {
                        actor: a,
                        seq,
                        new_request: RequestId(id),
                    }))
                )
            }
        }
    }
}

fn dump_all<B: Backend>(r: &mut Rig<B>) -> String {
    r.read(|t| dump(t, &[TENANT, OTHER]))
}

/// Random sequences of up to 40 steps, 256 of them (`PROPTEST_CASES` overrides).
pub fn random_operation_sequences_match_the_reference<B: Backend>(make: impl Fn() -> B) {
    random_sequences(make, 256);
}

/// [`random_operation_sequences_match_the_reference`] with `cases` sequences unless
/// `PROPTEST_CASES` says otherwise.
pub fn random_sequences<B: Backend>(make: impl Fn() -> B, cases: u32) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(step(), 1..40);
    let outcome = runner.run(&strategy, |steps| {
        let mut real = Rig::new(make());
        let mut model = Rig::new(Memory::default());
        let (mut d_real, mut d_model) = (
            Driver {
                next_id: 0,
                steps: 0,
            },
            Driver {
                next_id: 0,
                steps: 0,
            },
        );
        for (i, step) in steps.iter().enumerate() {
            let got = d_real.apply(&mut real, step);
            let want = d_model.apply(&mut model, step);
            prop_assert_eq!(&got, &want, "answer to step {} {:?}", i, step);
            let (got, want) = (dump_all(&mut real), dump_all(&mut model));
            if got != want {
                return Err(TestCaseError::fail(format!(
                    "after step {i} {step:?}:\nbackend:\n{got}\nreference:\n{want}"
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

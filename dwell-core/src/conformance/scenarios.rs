//! The scenarios of the conformance suite, one function each.
//! Long because it is the whole suite; each scenario is one function.

use super::*;

fn rig<B: Backend>(make: impl Fn() -> B) -> Rig<B> {
    Rig::new(make())
}

fn accepted(ack: EnqueueAck) -> u64 {
    match ack {
        EnqueueAck::Accepted { seq } => seq,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

pub fn an_enqueue_creates_the_actor_pinned_to_its_module<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    assert_eq!(accepted(r.enqueue(&a, event(b"1"))), 0);
    assert_eq!(accepted(r.enqueue(&a, event(b"2"))), 1);
    let meta = r.meta(&a).expect("created");
    assert_eq!((meta.digest.as_str(), meta.version), ("d1", 1));
    assert_eq!(meta.head_seq, 0);
    assert_eq!(r.mail(&a).len(), 2);
    assert!(
        r.notices
            .iter()
            .any(|n| matches!(n, Notice::Mail(x) if *x == a))
    );
    let missing = ActorId::new(TenantId(TENANT.into()), "nope", "a");
    assert_eq!(r.enqueue(&missing, event(b"")), EnqueueAck::UnknownModule);
    assert!(r.meta(&missing).is_none());
}

pub fn the_actor_quota_counts_creations_and_deletions<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    r.config.max_actors = 2;
    r.enqueue(&actor(TENANT, "a"), event(b""));
    r.enqueue(&actor(TENANT, "b"), event(b""));
    assert_eq!(
        r.enqueue(&actor(TENANT, "c"), event(b"")),
        EnqueueAck::ActorQuota(2)
    );
    // Per tenant: another tenant is not affected.
    accepted(r.enqueue(&actor(OTHER, "c"), event(b"")));
    let deleted = r.tx(|tx| {
        tx.admin(AdminOp::DeleteActor {
            actor: actor(TENANT, "a"),
        })
    });
    assert!(deleted);
    accepted(r.enqueue(&actor(TENANT, "c"), event(b"")));
}

pub fn a_turn_applies_exactly_once_even_when_committed_again<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    r.enqueue(&a, event(b"1"));
    r.enqueue(&a, event(b"2"));
    let ack = r.commit(&a, 0, done(b"s1", vec![]));
    assert_eq!(
        ack.meta.as_ref().map(|m| (m.head_seq, m.turns)),
        Some((1, 1))
    );
    // The same turn again (a runner that crashed after the commit, or raced): ignored.
    let again = r.commit(&a, 0, done(b"WRONG", vec![]));
    assert_eq!(again.meta.map(|m| (m.head_seq, m.turns)), Some((1, 1)));
    assert_eq!(r.state(&a).as_deref(), Some(&b"s1"[..]));
    // A turn ahead of the head is stale too.
    r.commit(&a, 5, done(b"WRONG", vec![]));
    assert_eq!(r.meta(&a).map(|m| m.head_seq), Some(1));
    r.commit(&a, 1, done(b"s2", vec![]));
    let meta = r.meta(&a).unwrap();
    assert_eq!((meta.head_seq, meta.turns), (2, 2));
    assert_eq!(r.state(&a).as_deref(), Some(&b"s2"[..]));
    assert!(r.mail(&a).is_empty());
    // A turn for an actor that does not exist is refused, not invented.
    let ghost = actor(TENANT, "ghost");
    let refused = r.try_tx(|tx| {
        tx.commit_turns(
            &ghost,
            vec![CommittedTurn {
                seq: 0,
                result: done(b"x", vec![]),
                took_us: 0,
            }],
            Vec::new(),
            None,
            None,
            HISTORY,
        )
    });
    assert!(matches!(refused, Err(Error::Corrupt(_))), "{refused:?}");
    assert!(r.meta(&ghost).is_none());
}

pub fn a_request_is_settled_by_the_first_answer_only<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    accepted(r.call(&a, 7, None));
    assert_eq!(r.request_status(7), Some(RequestStatus::Pending));
    r.commit(
        &a,
        0,
        done(b"s", vec![reply(7, b"first"), reply(7, b"second")]),
    );
    assert_eq!(
        r.request_status(7),
        Some(RequestStatus::Completed {
            reply: b"first".to_vec()
        })
    );
    assert!(
        r.notices
            .iter()
            .any(|n| matches!(n, Notice::Settled(RequestId(7), _)))
    );
    // Another tenant's actor cannot settle it.
    let b = actor(OTHER, "b");
    accepted(r.call(&a, 8, None));
    r.enqueue(&b, event(b""));
    r.commit(&b, 0, done(b"s", vec![reply(8, b"forged")]));
    assert_eq!(r.request_status(8), Some(RequestStatus::Pending));
}

pub fn a_dead_letter_fails_its_request_and_can_be_retried<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    accepted(r.call(&a, 9, None));
    r.commit(
        &a,
        0,
        TurnResult::DeadLetter {
            error: "trapped".into(),
            attempts: 3,
        },
    );
    let meta = r.meta(&a).unwrap();
    assert_eq!((meta.head_seq, meta.dead_letters, meta.turns), (1, 1, 0));
    assert!(matches!(
        r.request_status(9),
        Some(RequestStatus::Failed { error, .. }) if error == "trapped"
    ));
    let retried = r.tx(|tx| {
        tx.admin(AdminOp::RetryDeadLetter {
            actor: a.clone(),
            seq: 0,
            new_request: RequestId(10),
        })
    });
    assert!(retried);
    let mail = r.mail(&a);
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0].1.kind,
        MessageKind::Request {
            request: RequestId(10)
        }
    );
    assert_eq!(r.request_status(10), Some(RequestStatus::Pending));
    // Retried once: the dead letter is gone.
    let twice = r.tx(|tx| {
        tx.admin(AdminOp::RetryDeadLetter {
            actor: a.clone(),
            seq: 0,
            new_request: RequestId(11),
        })
    });
    assert!(!twice);
}

fn inline(actor: &ActorId, id: u128, result: Option<TurnResult>) -> Inline {
    let mut r = req(actor, request(id));
    r.request = Some(NewRequest {
        id: RequestId(id),
        callback_url: None,
    });
    Inline {
        req: r,
        timer: None,
        result,
        took_us: 0,
    }
}

fn expect_of(meta: &dwell_types::records::ActorMeta) -> Expect {
    Expect {
        head_seq: meta.head_seq,
        created_ms: Some(meta.created_ms),
        digest: meta.digest.clone(),
    }
}

pub fn an_inline_turn_applies_only_to_the_actor_as_the_runner_saw_it<B: Backend>(
    make: impl Fn() -> B,
) {
    let mut r = rig(make);
    // A new actor: the runner saw none.
    let a = actor(TENANT, "a");
    let fresh = Expect {
        head_seq: 0,
        created_ms: None,
        digest: "d1".into(),
    };
    let (ack, acks) = r.commit_inline(
        &a,
        vec![
            inline(&a, 1, Some(done(b"", vec![reply(1, b"one")]))),
            inline(&a, 2, Some(done(b"s2", vec![reply(2, b"two")]))),
        ],
        Some(fresh),
    );
    assert!(ack.inline_applied);
    assert_eq!(
        acks,
        vec![
            (0, EnqueueAck::Accepted { seq: 0 }),
            (1, EnqueueAck::Accepted { seq: 1 })
        ]
    );
    // Never in the mailbox; state, head and replies as run.
    assert!(r.mail(&a).is_empty());
    let meta = r.meta(&a).unwrap();
    assert_eq!((meta.head_seq, meta.turns), (2, 2));
    assert_eq!(r.state(&a).as_deref(), Some(&b"s2"[..]));
    assert_eq!(
        r.request_status(2),
        Some(RequestStatus::Completed {
            reply: b"two".to_vec()
        })
    );
    // And an existing one, as seen.
    let (ack, _) = r.commit_inline(
        &a,
        vec![inline(&a, 3, Some(done(b"s3", vec![])))],
        Some(expect_of(&meta)),
    );
    assert!(ack.inline_applied);
    assert_eq!(r.meta(&a).unwrap().head_seq, 3);
}

/// Each branch: the message is enqueued (acknowledged), its outcome discarded.
pub fn every_inline_fall_back_enqueues_and_discards_the_outcome<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    r.enqueue(&a, event(b"first"));
    r.commit(&a, 0, done(b"s0", vec![]));
    let seen = expect_of(&r.meta(&a).unwrap());
    let mut id = 100;
    let check = |r: &mut Rig<B>, why: &str, inl: Vec<Inline>, expect: Option<Expect>| {
        let before = r.meta(&a).unwrap();
        let mail_before = r.mail(&a).len();
        let n = inl.len();
        let (ack, acks) = r.commit_inline(&a, inl, expect);
        assert!(!ack.inline_applied, "{why}: applied");
        assert_eq!(acks.len(), n, "{why}: every inline turn answered");
        let after = r.meta(&a).unwrap();
        assert_eq!(after.turns, before.turns, "{why}: outcome discarded");
        assert_eq!(
            r.state(&a).as_deref(),
            Some(&b"s0"[..]),
            "{why}: state kept"
        );
        let enqueued = acks
            .iter()
            .filter(|(_, k)| matches!(k, EnqueueAck::Accepted { .. }))
            .count();
        assert_eq!(r.mail(&a).len(), mail_before + enqueued, "{why}: enqueued");
    };
    let mut next = || {
        id += 1;
        id
    };
    // 1. The runner saw another head.
    let mut stale = seen.clone();
    stale.head_seq += 1;
    let i = inline(&a, next(), Some(done(b"X", vec![])));
    check(&mut r, "stale head", vec![i], Some(stale));
    // 2. Another digest (a deploy intervened).
    let mut other = seen.clone();
    other.digest = "d0".into();
    let i = inline(&a, next(), Some(done(b"X", vec![])));
    check(&mut r, "other digest", vec![i], Some(other));
    // 3. No expectation at all.
    let i = inline(&a, next(), Some(done(b"X", vec![])));
    check(&mut r, "no expectation", vec![i], None);
    // Mail is now ahead of any inline turn.
    assert!(!r.mail(&a).is_empty());
    let head = r.meta(&a).unwrap();
    let i = inline(&a, next(), Some(done(b"X", vec![])));
    check(&mut r, "mail ahead", vec![i], Some(expect_of(&head)));
    // Drain the mailbox (turns that keep the state), then the key-based branches.
    for (seq, _) in r.mail(&a) {
        r.commit(&a, seq, done(b"", vec![]));
    }
    assert!(r.mail(&a).is_empty());
    r.call(&actor(TENANT, "a"), 500, Some(("used", 1)));
    let (seq, _) = r.mail(&a)[0].clone();
    r.commit(&a, seq, done(b"", vec![]));
    let seen = expect_of(&r.meta(&a).unwrap());
    // 4. An Idempotency-Key already used (and unexpired).
    let mut i = inline(&a, next(), Some(done(b"X", vec![])));
    i.req.idempotency = Some(Idempotency {
        key: "used".into(),
        expires_ms: r.now + 10_000,
        fingerprint: [1; 32],
    });
    let before = r.mail(&a).len();
    let (ack, acks) = r.commit_inline(&a, vec![i], Some(seen.clone()));
    assert!(!ack.inline_applied);
    assert!(matches!(acks[0].1, EnqueueAck::Duplicate { .. }));
    assert_eq!(r.mail(&a).len(), before, "a repeat enqueues nothing");
    // 5. The same key twice in one batch.
    let keyed = |id: u128| {
        let mut i = inline(&a, id, Some(done(b"X", vec![])));
        i.req.idempotency = Some(Idempotency {
            key: "twice".into(),
            expires_ms: 1_000_000,
            fingerprint: [2; 32],
        });
        i
    };
    let (ack, acks) = r.commit_inline(&a, vec![keyed(next()), keyed(next())], Some(seen.clone()));
    assert!(!ack.inline_applied);
    assert!(matches!(acks[0].1, EnqueueAck::Accepted { .. }));
    assert!(matches!(acks[1].1, EnqueueAck::Duplicate { .. }));
    for (seq, _) in r.mail(&a) {
        r.commit(&a, seq, done(b"", vec![]));
    }
    let seen = expect_of(&r.meta(&a).unwrap());
    // 6. A timer that is no longer pending: nothing is enqueued for it.
    let mut t = Inline {
        req: req(
            &a,
            Envelope {
                kind: MessageKind::Timer {
                    name: "gone".into(),
                },
                body: Vec::new(),
                enqueued_ms: 0,
                trace: None,
            },
        ),
        timer: Some(5_000),
        result: Some(done(b"X", vec![])),
        took_us: 0,
    };
    let (ack, acks) = r.commit_inline(&a, vec![t.clone()], Some(seen.clone()));
    assert!(!ack.inline_applied);
    assert_eq!(acks.len(), 1);
    assert!(r.mail(&a).is_empty(), "a timer not pending is not fired");
    // 7. Not run (the runner could not): enqueued, after those that ran.
    t.timer = None;
    t.result = None;
    let ran = inline(&a, next(), Some(done(b"s9", vec![])));
    let (ack, acks) = r.commit_inline(&a, vec![ran, t], Some(seen));
    assert!(!ack.inline_applied);
    assert_eq!(acks.len(), 2);
    assert_eq!(
        r.state(&a).as_deref(),
        Some(&b"s9"[..]),
        "the run one applied"
    );
    assert_eq!(r.mail(&a).len(), 1, "the other enqueued");
    // 8. A complete actor: refused, nothing enqueued.
    let c = actor(TENANT, "c");
    r.enqueue(&c, event(b""));
    r.commit(&c, 0, done(b"", vec![Effect::Complete]));
    let seen = expect_of(&r.meta(&c).unwrap());
    let (_, acks) = r.commit_inline(
        &c,
        vec![inline(&c, next(), Some(done(b"X", vec![])))],
        Some(seen),
    );
    assert_eq!(acks[0].1, EnqueueAck::ActorCompleted);
    // 9. Over the actor quota: every inline turn hears it.
    r.config.max_actors = 0;
    let q = actor(TENANT, "q");
    let (ack, acks) = r.commit_inline(
        &q,
        vec![inline(&q, next(), Some(done(b"X", vec![])))],
        Some(Expect {
            head_seq: 0,
            created_ms: None,
            digest: "d1".into(),
        }),
    );
    assert!(ack.meta.is_none());
    assert!(matches!(acks[0].1, EnqueueAck::ActorQuota(_)));
    assert!(r.meta(&q).is_none());
}

pub fn timers_fire_once_never_early_and_can_be_replaced_or_cancelled<B: Backend>(
    make: impl Fn() -> B,
) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    r.enqueue(&a, event(b""));
    r.commit(
        &a,
        0,
        done(
            b"s",
            vec![
                set_timer("t", 5_000),
                set_timer("u", 6_000),
                set_timer("v", 7_000),
            ],
        ),
    );
    assert_eq!(r.meta(&a).unwrap().timers, 3);
    assert!(
        r.notices
            .iter()
            .any(|n| matches!(n, Notice::TimerSet { .. }))
    );
    // Never early.
    assert_eq!(r.tx(|tx| tx.fire_timers(4_999, 100)), 0);
    assert!(r.mail(&a).is_empty());
    // Replace `u` (later) and cancel `v`.
    r.enqueue(&a, event(b""));
    r.commit(
        &a,
        1,
        done(
            b"s",
            vec![
                set_timer("u", 9_000),
                Effect::CancelTimer { name: "v".into() },
            ],
        ),
    );
    assert_eq!(r.meta(&a).unwrap().timers, 2);
    // Once: at its time, then never again.
    assert_eq!(r.tx(|tx| tx.fire_timers(8_000, 100)), 1);
    assert_eq!(r.tx(|tx| tx.fire_timers(8_000, 100)), 0);
    let mail = r.mail(&a);
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].1.kind, MessageKind::Timer { name: "t".into() });
    assert_eq!(mail[0].1.body, b"t");
    // A replaced timer's old due time fires nothing; firing a specific stale key is a no-op.
    let key = a.storage_key();
    assert!(!r.tx(|tx| tx.fire_one(6_000, &key, "u")));
    assert_eq!(
        r.read(|t| t.timer_due(&key, "u")),
        Some(9_000),
        "still pending"
    );
    assert_eq!(r.read(|t| t.timer_names(&key)), vec!["u".to_owned()]);
    assert!(r.tx(|tx| tx.fire_one(9_000, &a.storage_key(), "u")));
    assert_eq!(r.mail(&a).len(), 2);
    assert_eq!(r.meta(&a).unwrap().timers, 0);
    // Due while down: a timer long past is fired at the next sweep, once.
    r.enqueue(&a, event(b""));
    let head = r.meta(&a).unwrap().head_seq;
    for (seq, _) in r.mail(&a) {
        let effects = if seq == head {
            vec![set_timer("late", 10)]
        } else {
            vec![]
        };
        r.commit(&a, seq, done(b"", effects));
    }
    assert_eq!(r.tx(|tx| tx.fire_timers(1_000_000, 100)), 1);
    assert_eq!(r.mail(&a).len(), 1);
}

pub fn completion_cancels_timers_and_refuses_more_mail<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    r.enqueue(&a, event(b""));
    r.commit(
        &a,
        0,
        done(
            b"s",
            vec![
                set_timer("t", 5_000),
                Effect::Complete,
                set_timer("after", 6_000),
            ],
        ),
    );
    let meta = r.meta(&a).unwrap();
    assert_eq!((meta.status, meta.timers), (ActorStatus::Completed, 0));
    assert_eq!(r.tx(|tx| tx.fire_timers(u64::MAX, 100)), 0);
    assert_eq!(r.enqueue(&a, event(b"")), EnqueueAck::ActorCompleted);
}

pub fn the_outbox_retries_then_finishes_with_a_result_message<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    r.enqueue(&a, event(b""));
    r.commit(&a, 0, done(b"s", vec![http_call("c1")]));
    assert!(r.notices.iter().any(|n| matches!(n, Notice::Outbox)));
    let entries = r.read(|t| t.outbox_from(0, 10));
    assert_eq!(entries.len(), 1);
    let (id, entry) = entries[0].clone();
    assert_eq!((entry.due_ms, entry.attempts), (r.now, 0));
    let key = a.storage_key();
    assert_eq!(r.read(|t| t.http_pending(&key, "c1")), Some(id));
    r.tx(|tx| {
        tx.outbox_update(
            id,
            OutboxUpdate::Retry {
                due: 9_000,
                error: "503".into(),
            },
        )
    });
    let entry = r.read(|t| t.outbox(id)).unwrap();
    assert_eq!((entry.due_ms, entry.attempts), (9_000, 1));
    assert_eq!(entry.last_error.as_deref(), Some("503"));
    let result = Envelope {
        kind: MessageKind::Event,
        body: b"http result".to_vec(),
        enqueued_ms: 0,
        trace: None,
    };
    r.tx(|tx| {
        tx.outbox_update(
            id,
            OutboxUpdate::Finish {
                result: Some(result),
                callback: None,
            },
        )
    });
    assert!(r.read(|t| t.outbox(id)).is_none());
    assert_eq!(r.read(|t| t.http_pending(&key, "c1")), None);
    let mail = r.mail(&a);
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].1.body, b"http result");
    // An update for a finished entry changes nothing.
    r.tx(|tx| {
        tx.outbox_update(
            id,
            OutboxUpdate::Retry {
                due: 1,
                error: "late".into(),
            },
        )
    });
    assert!(r.read(|t| t.outbox(id)).is_none());
}

pub fn idempotency_keys_repeat_conflict_and_expire<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    let b = actor(TENANT, "b");
    assert_eq!(accepted(r.call(&a, 1, Some(("k", 1)))), 0);
    assert_eq!(
        r.call(&a, 2, Some(("k", 1))),
        EnqueueAck::Duplicate {
            request: Some(RequestId(1)),
            seq: 0
        }
    );
    assert_eq!(r.call(&a, 3, Some(("k", 9))), EnqueueAck::KeyConflict);
    assert_eq!(r.call(&b, 4, Some(("k", 1))), EnqueueAck::KeyConflict);
    // Keys are per tenant.
    accepted(r.call(&actor(OTHER, "a"), 5, Some(("k", 1))));
    assert_eq!(r.mail(&a).len(), 1);
    assert_eq!(r.request_status(2), None);
    // Forgotten once expired (the purge, or a use after expiry).
    r.now += 10_001;
    let now = r.now;
    assert!(r.tx(|tx| tx.purge(now, 100)) >= 1);
    assert!(r.read(|t| t.idempotency(TENANT, "k")).is_none());
    assert_eq!(accepted(r.call(&a, 6, Some(("k", 7)))), 1);
    r.now += 20_000;
    assert_eq!(
        accepted(r.call(&a, 7, Some(("k", 7)))),
        2,
        "expired, not yet purged"
    );
    assert_eq!(r.tx(|tx| tx.purge(0, 100)), 0, "nothing expires before 0");
}

pub fn deleting_an_actor_fails_its_waiting_requests<B: Backend>(make: impl Fn() -> B) {
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    r.call(&a, 1, None);
    r.commit(
        &a,
        0,
        done(b"s", vec![reply(1, b"ok"), set_timer("t", 5_000)]),
    );
    r.call(&a, 2, None);
    assert!(r.tx(|tx| tx.admin(AdminOp::DeleteActor { actor: a.clone() })));
    assert!(r.meta(&a).is_none());
    assert!(r.state(&a).is_none());
    assert!(r.mail(&a).is_empty());
    assert!(matches!(
        r.request_status(2),
        Some(RequestStatus::Failed { .. })
    ));
    assert!(matches!(
        r.request_status(1),
        Some(RequestStatus::Completed { .. })
    ));
    assert_eq!(r.tx(|tx| tx.fire_timers(u64::MAX, 100)), 0);
    assert_eq!(r.read(|t| t.actor_count(TENANT)), 0);
    assert!(!r.tx(|tx| tx.admin(AdminOp::DeleteActor { actor: a.clone() })));
}

pub fn deleting_a_tenant_purges_everything_of_it_and_nothing_else<B: Backend>(
    make: impl Fn() -> B,
) {
    let mut r = rig(make);
    let survivor = actor(OTHER, "s");
    r.call(&survivor, 1_000, Some(("k", 1)));
    r.tx(|tx| {
        tx.admin(AdminOp::PutKey {
            id: "key-other".into(),
            record: api_key(OTHER),
        })
    });
    for i in 0..7u128 {
        let a = actor(TENANT, &format!("a{i}"));
        r.call(&a, i, Some((&format!("k{i}"), 1)));
        r.commit(
            &a,
            0,
            done(
                b"s",
                vec![set_timer("t", 5_000), http_call("c"), reply(i, b"")],
            ),
        );
        r.enqueue(&a, event(b"waiting"));
    }
    r.tx(|tx| {
        tx.admin(AdminOp::PutKey {
            id: "key-mine".into(),
            record: api_key(TENANT),
        })
    });
    let before = r.read(|t| dump(t, &[OTHER]));
    assert!(r.tx(|tx| tx.admin(AdminOp::DeleteTenant {
        name: TENANT.into()
    })));
    // Keys and modules go at once; the rest in bounded batches until none is left.
    assert!(r.read(|t| t.api_key("key-mine")).is_none());
    assert!(r.read(|t| t.module_keys(&format!("{TENANT}/"))).is_empty());
    let mut batches = 0;
    while r.tx(|tx| {
        tx.admin(AdminOp::PurgeTenant {
            id: TENANT.into(),
            max: 3,
        })
    }) {
        batches += 1;
        assert!(batches < 100, "the purge ends");
    }
    assert!(batches > 2, "bounded batches ({batches})");
    assert!(
        r.read(|t| t.actor_keys(&format!("{TENANT}/"), usize::MAX))
            .is_empty()
    );
    assert!(
        r.read(|t| t.idempotency_keys(TENANT, usize::MAX))
            .is_empty()
    );
    assert!(
        r.read(|t| t.requests_from(0, usize::MAX))
            .iter()
            .all(|(_, q)| q.actor.tenant.0 == OTHER)
    );
    assert!(r.read(|t| t.outbox_from(0, usize::MAX)).is_empty());
    assert_eq!(r.read(|t| t.due_timers(u64::MAX, usize::MAX)), vec![]);
    assert_eq!(r.read(|t| t.actor_count(TENANT)), 0);
    // The other tenant is exactly as it was.
    let after = r.read(|t| dump(t, &[OTHER]));
    let theirs = |d: &str| {
        d.lines()
            .filter(|l| {
                !l.contains(&format!("{TENANT}/"))
                    && !l.starts_with("  ")
                    && !l.starts_with("api keys")
                    && !l.starts_with("outbox")
                    && !l.starts_with("due timers")
                    && !l.starts_with("request")
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(theirs(&after), theirs(&before));
    assert_eq!(r.mail(&survivor).len(), 1);
    assert!(r.read(|t| t.api_key("key-other")).is_some());
    // A second purge of a finished job does nothing.
    assert!(!r.tx(|tx| tx.admin(AdminOp::PurgeTenant {
        id: TENANT.into(),
        max: 3
    })));
}

/// On a cluster, each node purges a deleted tenant's actors of the partitions it holds;
/// the job waits while another node's actors remain, and ends once none is left.
pub fn a_deleted_tenant_is_purged_by_each_node_for_its_own_actors<B: Backend>(
    make: impl Fn() -> B,
) {
    use dwell_types::placement::{Placement, Snapshot};
    use std::sync::Arc;
    const COUNT: u32 = 64;
    let mut r = rig(make);
    let actors: Vec<ActorId> = (0..24).map(|i| actor(TENANT, &format!("a{i}"))).collect();
    for a in &actors {
        r.enqueue(a, event(b"x"));
    }
    let first_half = |a: &ActorId| a.partition(COUNT) < COUNT / 2;
    assert!(actors.iter().any(first_half) && !actors.iter().all(first_half));
    let node = |first: bool| {
        let p = Arc::new(Placement::new("n", COUNT));
        p.set(Snapshot {
            held: (0..COUNT)
                .filter(|q| (*q < COUNT / 2) == first)
                .map(|q| (q, 1))
                .collect(),
            owners: vec![Some("n:1".into()); COUNT as usize],
            serving: true,
            until: None,
        });
        p
    };
    assert!(r.tx(|tx| tx.admin(AdminOp::DeleteTenant {
        name: TENANT.into()
    })));
    let left = |r: &mut Rig<B>| r.read(|t| t.actor_keys(&format!("{TENANT}/"), usize::MAX));
    // The first node purges its own, then waits for the other's.
    r.config.placement = Some(node(true));
    for _ in 0..20 {
        assert!(
            r.tx(|tx| tx.admin(AdminOp::PurgeTenant {
                id: TENANT.into(),
                max: 3,
            })),
            "the other node's actors remain"
        );
    }
    let remaining = left(&mut r);
    assert_eq!(
        remaining.len(),
        actors.iter().filter(|a| !first_half(a)).count(),
        "only the other node's actors are left: {remaining:?}"
    );
    // The other node purges its own and ends the job.
    r.config.placement = Some(node(false));
    let mut batches = 0;
    while r.tx(|tx| {
        tx.admin(AdminOp::PurgeTenant {
            id: TENANT.into(),
            max: 3,
        })
    }) {
        batches += 1;
        assert!(batches < 100, "the purge ends");
    }
    assert!(left(&mut r).is_empty());
    assert_eq!(r.read(|t| t.actor_count(TENANT)), 0);
    // Done for the first node too.
    r.config.placement = Some(node(true));
    assert!(!r.tx(|tx| tx.admin(AdminOp::PurgeTenant {
        id: TENANT.into(),
        max: 3
    })));
}

pub fn large_states_point_at_staged_slices<B: Backend>(make: impl Fn() -> B) {
    use dwell_storage::{Carrier, Staged, StateRef};
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    r.enqueue(&a, event(b""));
    r.tx(|tx| {
        tx.tables.stage_slice(1, 0, b"hello ")?;
        tx.tables.stage_slice(1, 1, b"world")
    });
    let staged = Staged {
        state: StateRef {
            id: 1,
            len: 11,
            slices: 2,
        },
        carrier: Carrier::Turn(0),
    };
    r.tx(|tx| {
        tx.commit_turns(
            &a,
            vec![CommittedTurn {
                seq: 0,
                result: done(b"", vec![]),
                took_us: 0,
            }],
            Vec::new(),
            None,
            Some(staged),
            HISTORY,
        )
    });
    assert_eq!(r.state(&a).as_deref(), Some(&b"hello world"[..]));
    // A small state replaces it; a stale turn's staged slices are dropped with it.
    r.enqueue(&a, event(b""));
    r.commit(&a, 1, done(b"small", vec![]));
    assert_eq!(r.state(&a).as_deref(), Some(&b"small"[..]));
    r.tx(|tx| tx.tables.stage_slice(2, 0, b"never"));
    let stale = Staged {
        state: StateRef {
            id: 2,
            len: 5,
            slices: 1,
        },
        carrier: Carrier::Turn(0),
    };
    r.tx(|tx| {
        tx.commit_turns(
            &a,
            vec![CommittedTurn {
                seq: 0,
                result: done(b"", vec![]),
                took_us: 0,
            }],
            Vec::new(),
            None,
            Some(stale),
            HISTORY,
        )
    });
    assert_eq!(r.state(&a).as_deref(), Some(&b"small"[..]));
}

/// Staged states' ids are random over all of `u64`: two ids past `i64::MAX` (where a
/// backend with signed columns could clamp or overflow) stay two states.
pub fn staged_ids_across_the_whole_u64_range_stay_apart<B: Backend>(make: impl Fn() -> B) {
    use dwell_storage::{Carrier, Staged, StateRef};
    let mut r = rig(make);
    let ids = [u64::MAX - 1, (1 << 63) | 5, u64::MAX];
    let actors: Vec<_> = ["x", "y", "z"].iter().map(|k| actor(TENANT, k)).collect();
    for (i, id) in ids.iter().enumerate() {
        r.enqueue(&actors[i], event(b""));
        r.tx(|tx| {
            tx.tables.stage_slice(*id, 0, b"state ")?;
            tx.tables.stage_slice(*id, 1, format!("of {i}").as_bytes())
        });
    }
    for (i, id) in ids.iter().enumerate() {
        let staged = Staged {
            state: StateRef {
                id: *id,
                len: 10,
                slices: 2,
            },
            carrier: Carrier::Turn(0),
        };
        r.tx(|tx| {
            tx.commit_turns(
                &actors[i],
                vec![CommittedTurn {
                    seq: 0,
                    result: done(b"", vec![]),
                    took_us: 0,
                }],
                Vec::new(),
                None,
                Some(staged),
                HISTORY,
            )
        });
    }
    for (i, a) in actors.iter().enumerate() {
        assert_eq!(r.state(a), Some(format!("state of {i}").into_bytes()));
    }
}

/// Inside one write transaction, every read sees the transaction's earlier writes —
/// whether the backend sends them at once or holds them until COMMIT, and whether the
/// rows were prefetched or not — and the next transaction sees what it committed.
pub fn one_transaction_reads_its_own_writes_and_its_prefetched_rows<B: Backend>(
    make: impl Fn() -> B,
) {
    let mut r = rig(make);
    let (a, b) = (actor(TENANT, "a"), actor(TENANT, "b"));
    for _ in 0..3 {
        r.enqueue(&a, event(b"old"));
    }
    let (ka, kb) = (a.storage_key(), b.storage_key());
    let meta = r.meta(&a).expect("a exists");
    r.read(|t| {
        t.prefetch(&[&ka, &kb], &[(&ka, 0), (&ka, 1), (&kb, 0)])?;
        // Prefetched rows answer as the server has them.
        assert_eq!(t.actor(&ka)?.map(|m| m.created_ms), Some(meta.created_ms));
        assert!(t.actor(&kb)?.is_none());
        assert_eq!((t.last_seq(&ka)?, t.has_mail(&ka)?), (Some(2), true));
        assert_eq!((t.last_seq(&kb)?, t.has_mail(&kb)?), (None, false));
        Ok(())
    });
    r.backend
        .write(|t| {
            t.prefetch(&[&ka, &kb], &[(&ka, 0), (&ka, 1), (&kb, 0)])?;
            // Take the whole mailbox: the highest seq goes too.
            for seq in 0..3 {
                assert_eq!(
                    t.take_mail(&ka, seq)?.map(|e| e.body),
                    Some(b"old".to_vec())
                );
                assert!(t.take_mail(&ka, seq)?.is_none(), "taken twice");
            }
            assert_eq!((t.last_seq(&ka)?, t.has_mail(&ka)?), (None, false));
            // Put, read back, take what was put in this transaction.
            t.put_mail(&ka, 3, &event(b"new"))?;
            t.put_mail(&ka, 4, &event(b"newer"))?;
            assert_eq!((t.last_seq(&ka)?, t.has_mail(&ka)?), (Some(4), true));
            assert_eq!(t.take_mail(&ka, 3)?.map(|e| e.body), Some(b"new".to_vec()));
            assert_eq!(
                t.mail(&ka)?.into_iter().map(|(s, _)| s).collect::<Vec<_>>(),
                [4]
            );
            // A scan between writes does not lose the writes after it.
            t.put_mail(&kb, 0, &event(b"b"))?;
            let mut m = meta.clone();
            m.turns = 41;
            t.put_actor(&kb, &m)?;
            m.turns = 42;
            t.put_actor(&kb, &m)?;
            assert_eq!(t.actor(&kb)?.map(|m| m.turns), Some(42));
            t.remove_actor(&ka)?;
            assert!(t.actor(&ka)?.is_none());
            // Timers: taken only at their due time (the core takes the old one before
            // it sets a timer again).
            t.put_timer(10, &kb, "t", b"p1")?;
            assert_eq!(t.timer_due(&kb, "t")?, Some(10));
            assert!(t.take_timer(20, &kb, "t")?.is_none());
            assert_eq!(t.take_timer(10, &kb, "t")?, Some(b"p1".to_vec()));
            t.put_timer(20, &kb, "t", b"p2")?;
            assert_eq!(t.timer_due(&kb, "t")?, Some(20));
            assert_eq!(t.timer_names(&kb)?, ["t"]);
            assert_eq!(t.take_timer(20, &kb, "t")?, Some(b"p2".to_vec()));
            assert!(t.timer_due(&kb, "t")?.is_none());
            t.put_timer(30, &kb, "u", b"p3")?;
            // States: a small state, replaced in the same transaction.
            t.put_state(&kb, b"s1")?;
            t.put_state(&kb, b"s2")?;
            assert_eq!(t.state(&kb)?, Some(b"s2".to_vec()));
            t.clear_mail(&ka)?;
            assert!(!t.has_mail(&ka)?);
            t.put_mail(&ka, 5, &event(b"after clear"))?;
            t.put_actor_count(TENANT, 7)?;
            assert_eq!(t.actor_count(TENANT)?, 7);
            Ok(())
        })
        .expect("write");
    r.read(|t| {
        assert!(t.actor(&ka)?.is_none());
        assert_eq!(t.actor(&kb)?.map(|m| m.turns), Some(42));
        let mail = |k: &str| -> Result<Vec<(u64, Vec<u8>)>, Error> {
            Ok(t.mail(k)?.into_iter().map(|(s, e)| (s, e.body)).collect())
        };
        assert_eq!(mail(&ka)?, [(5, b"after clear".to_vec())]);
        assert_eq!(mail(&kb)?, [(0, b"b".to_vec())]);
        assert_eq!(t.last_seq(&ka)?, Some(5));
        assert_eq!(t.timer_names(&kb)?, ["u"]);
        assert_eq!(
            t.due_timers(u64::MAX, 10)?,
            [(30, kb.clone(), "u".to_owned())]
        );
        assert_eq!(t.state(&kb)?, Some(b"s2".to_vec()));
        assert_eq!(t.actor_count(TENANT)?, 7);
        Ok(())
    });
}

pub fn each_turn_leaves_a_history_record_within_its_retention<B: Backend>(make: impl Fn() -> B) {
    use dwell_types::history::{EffectNote, Outcome, StateMark};
    let mut r = rig(make);
    let a = actor(TENANT, "h");
    let key = a.storage_key();
    // MessagePack `{"type": ty}` (a fixmap of one fixstr pair).
    let typed = |ty: &str| {
        let mut body = vec![0x81, 0xa4];
        body.extend_from_slice(b"type");
        body.push(0xa0 + ty.len() as u8);
        body.extend_from_slice(ty.as_bytes());
        event(&body)
    };
    // Six turns: named steps, a refusal, a default step from the `type` field.
    for (seq, body) in ["register", "x", "x", "x", "pay", "x"].iter().enumerate() {
        accepted(r.enqueue(&a, typed(body)));
        r.now += 10;
        let result = match seq {
            1 => done(
                b"s1",
                vec![Effect::Step {
                    label: "waiting".into(),
                }],
            ),
            3 => TurnResult::Refused {
                error: "not now".into(),
                refusal: dwell_types::RefusalCode::Conflict,
            },
            5 => done(
                b"s5",
                vec![
                    set_timer("t", 99_999),
                    Effect::Step {
                        label: "done".into(),
                    },
                ],
            ),
            n => done(format!("s{n}").as_bytes(), vec![]),
        };
        r.commit(&a, seq as u64, result);
    }
    let history = r.read(|t| t.history(&key, None, 100));
    // `HISTORY` keeps 4 records, the states of the last 2 turns.
    let seqs: Vec<u64> = history.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [5, 4, 3, 2], "newest first, within retention");
    let (_, last) = &history[0];
    assert_eq!(last.step.as_deref(), Some("done"));
    assert_eq!(last.took_us, 7);
    assert_eq!(last.at_ms, r.now);
    assert_eq!(last.outcome, Outcome::Ok);
    assert_eq!(last.state, StateMark::Kept);
    assert_eq!(last.state_bytes, Some(2));
    assert_eq!(last.message.kind, "event");
    assert_eq!(last.message.label.as_deref(), Some("x"));
    assert!(
        matches!(&last.effects[..], [EffectNote::SetTimer { name, due_ms: 99_999 }] if name == "t")
    );
    assert_eq!(
        history[1].1.step.as_deref(),
        Some("pay"),
        "the type field names the step"
    );
    let refused = &history[2].1;
    assert!(matches!(&refused.outcome, Outcome::Refused { reason } if reason == "not now"));
    assert_eq!(refused.state, StateMark::Unchanged);
    assert_eq!(
        r.read(|t| t.history_state(&key, 5)).as_deref(),
        Some(&b"s5"[..])
    );
    assert_eq!(
        r.read(|t| t.history_state(&key, 4)).as_deref(),
        Some(&b"s4"[..])
    );
    assert_eq!(
        r.read(|t| t.history_state(&key, 2)),
        None,
        "beyond the kept states"
    );
    // Paging backwards from a cursor.
    let page = r.read(|t| t.history(&key, Some(4), 1));
    assert_eq!(page.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3]);
    assert_eq!(r.meta(&a).unwrap().step.as_deref(), Some("done"));
    // Another actor's history is its own; deleting the actor forgets it.
    let b = actor(TENANT, "h2");
    accepted(r.enqueue(&b, typed("register")));
    r.commit(&b, 0, done(b"b", vec![]));
    r.tx(|tx| tx.admin(AdminOp::DeleteActor { actor: a.clone() }));
    assert!(r.read(|t| t.history(&key, None, 100)).is_empty());
    assert_eq!(r.read(|t| t.history_state(&key, 5)), None);
    assert_eq!(r.read(|t| t.history(&b.storage_key(), None, 100)).len(), 1);
    // An actor made again under that name starts with no history of the first.
    accepted(r.enqueue(&a, typed("again")));
    r.commit(&a, 0, done(b"new", vec![]));
    let again = r.read(|t| t.history(&key, None, 100));
    assert_eq!(again.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [0]);
    assert_eq!(again[0].1.message.label.as_deref(), Some("again"));
    assert_eq!(r.read(|t| t.history_state(&key, 5)), None);
    assert_eq!(
        r.read(|t| t.history_state(&key, 0)).as_deref(),
        Some(&b"new"[..])
    );
}

pub fn an_upgrade_switches_version_and_state_together_and_can_be_rolled_back<B: Backend>(
    make: impl Fn() -> B,
) {
    use dwell_types::upgrade::UpgradeUndo;
    let mut r = rig(make);
    let a = actor(TENANT, "u");
    accepted(r.enqueue(&a, event(b"1")));
    r.commit(&a, 0, done(b"v1-state", vec![]));
    let upgrade = |head_seq: u64, from: &str| AdminOp::UpgradeActor {
        actor: a.clone(),
        from_digest: from.into(),
        head_seq,
        to_version: 2,
        to_digest: "d2".into(),
        state: Some(b"v2-state".to_vec()),
        undo_key: "undo/u".into(),
    };
    // Only from the version and head the state was migrated at.
    assert!(
        !r.tx(|tx| tx.admin(upgrade(0, "d1"))),
        "a turn committed since"
    );
    assert!(
        !r.tx(|tx| tx.admin(upgrade(1, "d9"))),
        "not on that version"
    );
    assert_eq!(r.state(&a).as_deref(), Some(&b"v1-state"[..]));
    assert!(r.tx(|tx| tx.admin(upgrade(1, "d1"))));
    let meta = r.meta(&a).unwrap();
    assert_eq!((meta.version, meta.digest.as_str()), (2, "d2"));
    assert_eq!(r.state(&a).as_deref(), Some(&b"v2-state"[..]));
    let undo = r
        .read(|t| t.meta("undo/u"))
        .and_then(|b| UpgradeUndo::from_bytes(&b))
        .expect("undo kept");
    assert_eq!((undo.version, undo.digest.as_str()), (1, "d1"));
    assert_eq!(undo.state.as_deref(), Some(&b"v1-state"[..]));

    // A turn its runner ran on the old version is not applied: the message stays.
    accepted(r.enqueue(&a, event(b"2")));
    let stale = Expect {
        head_seq: 2,
        created_ms: Some(meta.created_ms),
        digest: "d1".into(),
    };
    let turns = vec![CommittedTurn {
        seq: 1,
        result: done(b"old-code", vec![]),
        took_us: 1,
    }];
    let (ack, _) = r.tx(|tx| tx.commit_turns(&a, turns, Vec::new(), Some(stale), None, HISTORY));
    assert!(!ack.inline_applied, "the runner must read the store again");
    assert_eq!(r.meta(&a).unwrap().head_seq, 1);
    assert_eq!(r.mail(&a).len(), 1);
    assert_eq!(r.state(&a).as_deref(), Some(&b"v2-state"[..]));

    // Rolled back while no turn changed the new state; once only.
    let rollback = || AdminOp::RollbackActor {
        actor: a.clone(),
        undo_key: "undo/u".into(),
    };
    assert!(r.tx(|tx| tx.admin(rollback())));
    let meta = r.meta(&a).unwrap();
    assert_eq!((meta.version, meta.digest.as_str()), (1, "d1"));
    assert_eq!(r.state(&a).as_deref(), Some(&b"v1-state"[..]));
    assert!(!r.tx(|tx| tx.admin(rollback())), "the undo record is gone");

    // Moved again, then a turn on the new version: a rollback leaves it there.
    assert!(r.tx(|tx| tx.admin(upgrade(1, "d1"))));
    r.commit(&a, 1, done(b"v2-after", vec![]));
    assert!(!r.tx(|tx| tx.admin(rollback())));
    assert_eq!(r.meta(&a).unwrap().version, 2);
    assert_eq!(r.state(&a).as_deref(), Some(&b"v2-after"[..]));
}

/// A cluster node's turn core: a message for an actor another node runs goes to the
/// inbox (not its mailbox); the owner moves it into the mailbox, once, in one commit.
pub fn a_message_for_an_actor_of_another_node_waits_in_the_inbox_and_is_delivered_once<
    B: Backend,
>(
    make: impl Fn() -> B,
) {
    use dwell_types::placement::{Placement, Snapshot};
    use std::sync::Arc;
    const COUNT: u32 = 64;
    let mut r = rig(make);
    let a = actor(TENANT, "a");
    let b = (0..)
        .map(|i| actor(TENANT, &format!("b{i}")))
        .find(|b| b.partition(COUNT) != a.partition(COUNT))
        .unwrap();
    let node = |held: &ActorId| {
        let p = Arc::new(Placement::new("n", COUNT));
        p.set(Snapshot {
            held: [(held.partition(COUNT), 1)].into(),
            owners: vec![Some("n:1".into()); COUNT as usize],
            serving: true,
            until: None,
        });
        p
    };
    // On the node of `a`: a timer of `b` is not this node's to fire, and a message for
    // `b` (here, the answer to an ask `b` made) goes to the inbox.
    r.config.placement = Some(node(&a));
    r.tx(|tx| tx.tables.put_timer(10, &b.storage_key(), "t", b"p"));
    assert_eq!(
        r.tx(|tx| tx.fire_timers(100, 10)),
        0,
        "not this node's timer"
    );
    r.tx(|tx| {
        tx.reply(
            &a,
            ReplyTo::Actor {
                actor: b.clone(),
                correlation: "c1".into(),
            },
            Ok(b"yes".to_vec()),
            None,
            None,
        )
    });
    assert!(
        r.meta(&b).is_none() && r.mail(&b).is_empty(),
        "not in b's mailbox"
    );
    // Another node's pump sees it; on a's node it is not delivered.
    let ids: Vec<u64> = (1..64).collect();
    assert_eq!(r.tx(|tx| tx.deliver_inbox(&ids)), 0);
    // On the node of `b`: delivered into its mailbox, once.
    r.config.placement = Some(node(&b));
    let ids: Vec<u64> = (1..256).collect();
    assert_eq!(r.tx(|tx| tx.deliver_inbox(&ids)), 1);
    assert_eq!(r.tx(|tx| tx.deliver_inbox(&ids)), 0, "taken once");
    let mail = r.mail(&b);
    assert_eq!(mail.len(), 1);
    assert!(matches!(
        &mail[0].1.kind,
        MessageKind::AskReply { correlation, outcome: Ok(v) } if correlation == "c1" && v == b"yes"
    ));
    assert_eq!(
        r.tx(|tx| tx.fire_timers(100, 10)),
        1,
        "b's node fires b's timer"
    );
}

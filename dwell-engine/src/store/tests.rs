//! Store tests on a real redb file: inline turns (a message committed together with its
//! turn) and their fall-back to the mailbox when the actor is not as the runner saw it.
//! Long because of the large-state and inline-turn tests on a real file, plus the
//! conformance suite's redb wiring.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::*;
use crate::domain::{
    ActorId, Clock, Effect, Envelope, MessageKind, ReplyTo, RequestId, RequestStatus, TenantId,
    TurnResult, UnixMs,
};

/// The history these tests' commits keep (a few records, fewer states).
const HISTORY: crate::domain::history::Retention = crate::domain::history::Retention {
    turns: 8,
    states: 2,
    age_ms: 0,
};

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> UnixMs {
        1_000_000
    }
    fn sleep_until(&self, _: UnixMs) -> crate::domain::Sleep {
        Box::pin(std::future::pending())
    }
}

/// Remembers every notice, to check what the post-commit path was told.
#[derive(Default)]
struct Recorder(Mutex<Vec<Notice>>);

impl PostCommit for Recorder {
    fn committed(&self, notices: Vec<Notice>) {
        self.0.lock().unwrap().extend(notices);
    }
}

impl Recorder {
    fn mail(&self) -> usize {
        let n = self.0.lock().unwrap();
        n.iter().filter(|n| matches!(n, Notice::Mail(_))).count()
    }
}

/// A store on a redb file in `dir`, and the file's read side (to look at its tables of
/// large states).
fn open_redb(
    dir: &std::path::Path,
    hook: Arc<dyn PostCommit>,
    max_actors: u64,
) -> Result<(Store, dwell_storage_redb::RedbReads), dwell_storage::Error> {
    let (writer, reads) = dwell_storage_redb::open(dir)?;
    let store = Store::open(
        writer,
        Arc::new(reads.clone()),
        hook,
        Arc::new(FixedClock),
        WriterConfig {
            max_actors,
            placement: None,
        },
        None,
    );
    Ok((store, reads))
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    reads: dwell_storage_redb::RedbReads,
    hook: Arc<Recorder>,
    actor: ActorId,
    digest: String,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    fixture_with(100)
}

/// A store holding module `m` (digest `d1`) of the default tenant, which may have at most
/// `max_actors` actors.
fn fixture_with(max_actors: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Recorder::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, reads) = open_redb(dir.path(), hook.clone(), max_actors).unwrap();
    let tenant = TenantId::default_tenant();
    let digest = "d1".to_owned();
    rt.block_on(store.put_module(tenant.clone(), "m".into(), b"wasm".to_vec(), digest.clone()))
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        reads,
        hook,
        actor: ActorId::new(tenant, "m", "k"),
        digest,
        rt,
    }
}

fn request(actor: &ActorId, id: RequestId, key: Option<&str>) -> EnqueueRequest {
    EnqueueRequest {
        actor: actor.clone(),
        envelope: Envelope {
            kind: MessageKind::Request { request: id },
            body: b"in".to_vec(),
            enqueued_ms: 1,
            trace: None,
        },
        request: Some(NewRequest {
            id,
            callback_url: None,
        }),
        idempotency: key.map(|k| Idempotency {
            key: k.to_owned(),
            expires_ms: u64::MAX,
            fingerprint: [0; 32],
        }),
    }
}

/// The outcome of a turn that answers request `id` with `reply` and sets state `state`.
fn answered(id: RequestId, reply: &[u8], state: &[u8]) -> Option<TurnResult> {
    Some(TurnResult::Done {
        state: state.to_vec(),
        effects: vec![Effect::Reply {
            to: ReplyTo::Request(id),
            outcome: Ok(reply.to_vec()),
            refusal: None,
        }],
    })
}

impl Fixture {
    /// What a runner expects when it believed in another module version of a new actor.
    fn expect_old_version(&self) -> Option<Expect> {
        Some(Expect {
            head_seq: 0,
            created_ms: None,
            digest: "old".into(),
        })
    }

    fn expect(&self, head_seq: u64, created_ms: Option<UnixMs>) -> Option<Expect> {
        Some(Expect {
            head_seq,
            created_ms,
            digest: self.digest.clone(),
        })
    }

    /// Commit inline turns; returns the writer's answer and each caller's ack.
    fn commit(
        &self,
        inline: Vec<(EnqueueRequest, Option<TurnResult>)>,
        expect: Option<Expect>,
    ) -> (TurnsAck, Vec<EnqueueAck>) {
        let mut answers = Vec::new();
        let turns = inline
            .into_iter()
            .map(|(req, result)| {
                let (done, rx) = oneshot::channel();
                answers.push(rx);
                InlineTurn {
                    req,
                    timer: None,
                    result,
                    took_us: 0,
                    done,
                }
            })
            .collect();
        self.rt.block_on(async {
            let ack = self
                .store
                .commit_batch(self.actor.clone(), Vec::new(), turns, expect, HISTORY)
                .await
                .unwrap();
            let mut acks = Vec::new();
            for rx in answers {
                acks.push(rx.await.unwrap().unwrap());
            }
            (ack, acks)
        })
    }

    /// Commit one mailbox turn, the outcome of message `seq`.
    fn commit_turn(&self, seq: u64, result: TurnResult) {
        self.rt
            .block_on({
                let turn = CommittedTurn {
                    seq,
                    result,
                    took_us: 0,
                };
                self.store
                    .commit_turns(self.actor.clone(), vec![turn], HISTORY)
            })
            .unwrap();
    }

    fn mailbox(&self) -> Vec<u64> {
        match self.store.pending(&self.actor, 100).unwrap() {
            Some(b) => b.messages.iter().map(|(seq, _)| *seq).collect(),
            None => Vec::new(),
        }
    }

    fn state(&self) -> Option<Vec<u8>> {
        self.store.pending(&self.actor, 100).unwrap()?.state
    }

    fn status(&self, id: RequestId) -> RequestStatus {
        self.store
            .request(id)
            .unwrap()
            .expect("request exists")
            .status
    }
}

#[test]
fn an_inline_turn_commits_message_and_outcome_without_the_mailbox() {
    let f = fixture();
    let id = RequestId(1);
    let (ack, acks) = f.commit(
        vec![(request(&f.actor, id, None), answered(id, b"out", b"s1"))],
        f.expect(0, None),
    );
    assert!(ack.inline_applied);
    assert_eq!(acks, vec![EnqueueAck::Accepted { seq: 0 }]);
    let meta = ack.meta.expect("the first message created the actor");
    assert_eq!((meta.head_seq, meta.turns), (1, 1));
    assert_eq!(f.state(), Some(b"s1".to_vec()));
    assert!(f.mailbox().is_empty());
    assert_eq!(
        f.status(id),
        RequestStatus::Completed {
            reply: b"out".to_vec()
        }
    );
    assert_eq!(f.hook.mail(), 0, "no mailbox message was announced");

    // The next inline turn builds on what the runner saw after the first commit.
    let id2 = RequestId(2);
    let (ack, acks) = f.commit(
        vec![(request(&f.actor, id2, None), answered(id2, b"out2", b"s2"))],
        f.expect(1, Some(meta.created_ms)),
    );
    assert!(ack.inline_applied);
    assert_eq!(acks, vec![EnqueueAck::Accepted { seq: 1 }]);
    assert_eq!(f.state(), Some(b"s2".to_vec()));
}

#[test]
fn an_inline_turn_behind_mailbox_mail_is_enqueued_and_its_outcome_discarded() {
    let f = fixture();
    let first = RequestId(1);
    let queued =
        f.rt.block_on(f.store.enqueue(request(&f.actor, first, None)))
            .unwrap();
    assert_eq!(queued, EnqueueAck::Accepted { seq: 0 });
    let created = f.store.actor_meta(&f.actor).unwrap().unwrap().created_ms;

    // The runner did not see message 0 and ran message `late` on the empty state.
    let late = RequestId(2);
    let (ack, acks) = f.commit(
        vec![(
            request(&f.actor, late, None),
            answered(late, b"x", b"wrong"),
        )],
        f.expect(0, Some(created)),
    );
    assert!(!ack.inline_applied);
    assert_eq!(acks, vec![EnqueueAck::Accepted { seq: 1 }]);
    assert_eq!(f.mailbox(), vec![0, 1], "both wait in mailbox order");
    assert_eq!(f.state(), None, "the speculative outcome was discarded");
    assert_eq!(f.status(late), RequestStatus::Pending);
}

#[test]
fn an_inline_turn_for_a_replaced_or_recreated_actor_is_enqueued() {
    let f = fixture();
    let id = RequestId(1);
    // The runner believed in another module version.
    let stale = f.expect_old_version();
    let (ack, acks) = f.commit(
        vec![(request(&f.actor, id, None), answered(id, b"x", b"s"))],
        stale,
    );
    assert!(!ack.inline_applied);
    assert_eq!(acks, vec![EnqueueAck::Accepted { seq: 0 }]);
    assert_eq!(f.mailbox(), vec![0]);
    assert_eq!(f.state(), None);

    // The runner believed the actor existed, created at another time.
    let id2 = RequestId(2);
    let (ack, _) = f.commit(
        vec![(request(&f.actor, id2, None), answered(id2, b"x", b"s"))],
        f.expect(0, Some(42)),
    );
    assert!(!ack.inline_applied);
    assert_eq!(f.mailbox(), vec![0, 1]);
}

#[test]
fn a_repeated_idempotency_key_makes_inline_turns_fall_back_and_enqueues_once() {
    let f = fixture();
    let first = RequestId(1);
    let (ack, _) = f.commit(
        vec![(
            request(&f.actor, first, Some("K")),
            answered(first, b"r", b"s1"),
        )],
        f.expect(0, None),
    );
    assert!(ack.inline_applied);
    let created = ack.meta.unwrap().created_ms;

    // A repeat of K (run speculatively) and a fresh message behind it: neither outcome
    // applies; the repeat answers for the first request, the fresh one is enqueued.
    let (again, other) = (RequestId(2), RequestId(3));
    let (ack, acks) = f.commit(
        vec![
            (
                request(&f.actor, again, Some("K")),
                answered(again, b"r", b"s2"),
            ),
            (request(&f.actor, other, None), answered(other, b"r", b"s3")),
        ],
        f.expect(1, Some(created)),
    );
    assert!(!ack.inline_applied);
    assert_eq!(
        acks,
        vec![
            EnqueueAck::Duplicate {
                request: Some(first),
                seq: 0
            },
            EnqueueAck::Accepted { seq: 1 },
        ]
    );
    assert_eq!(
        f.state(),
        Some(b"s1".to_vec()),
        "only the first turn applied"
    );
    assert_eq!(f.mailbox(), vec![1]);
    assert!(
        f.store.request(again).unwrap().is_none(),
        "no second request"
    );
}

#[test]
fn turns_that_did_not_run_are_enqueued_after_the_ones_that_did() {
    let f = fixture();
    let (ran, trapped) = (RequestId(1), RequestId(2));
    let (ack, acks) = f.commit(
        vec![
            (request(&f.actor, ran, None), answered(ran, b"ok", b"s1")),
            (request(&f.actor, trapped, None), None),
        ],
        f.expect(0, None),
    );
    assert!(!ack.inline_applied, "one of them was only enqueued");
    assert_eq!(
        acks,
        vec![
            EnqueueAck::Accepted { seq: 0 },
            EnqueueAck::Accepted { seq: 1 }
        ]
    );
    assert_eq!(f.state(), Some(b"s1".to_vec()));
    assert_eq!(
        f.mailbox(),
        vec![1],
        "the one that did not run waits for a retry"
    );
    assert!(matches!(f.status(ran), RequestStatus::Completed { .. }));
    assert_eq!(f.status(trapped), RequestStatus::Pending);
    // The post-commit hook runs right after the callers are answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while f.hook.mail() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        f.hook.mail(),
        1,
        "its runner is told about the mailbox message"
    );
}

#[test]
fn an_inline_message_past_the_actor_quota_is_refused_and_nothing_is_stored() {
    let f = fixture_with(0);
    let id = RequestId(1);
    let (ack, acks) = f.commit(
        vec![(request(&f.actor, id, None), answered(id, b"r", b"s"))],
        f.expect(0, None),
    );
    assert!(!ack.inline_applied);
    assert_eq!(acks, vec![EnqueueAck::ActorQuota(0)]);
    assert!(f.store.actor_meta(&f.actor).unwrap().is_none());
    assert!(f.store.request(id).unwrap().is_none());
}

#[test]
fn a_batch_built_on_one_that_fell_back_falls_back_too() {
    // A runner submits batch 1 and, before hearing back, batch 2 built on batch 1's
    // outcome. Batch 1 does not apply (the actor is not as the runner saw it), so batch 2
    // must not either: both messages wait in the mailbox, in order.
    let f = fixture();
    let (first, second) = (RequestId(1), RequestId(2));
    let stale = f.expect_old_version();
    let (ack, _) = f.commit(
        vec![(request(&f.actor, first, None), answered(first, b"a", b"s1"))],
        stale,
    );
    assert!(!ack.inline_applied);
    let created = f.store.actor_meta(&f.actor).unwrap().unwrap().created_ms;
    let (ack, acks) = f.commit(
        vec![(
            request(&f.actor, second, None),
            answered(second, b"b", b"s2"),
        )],
        f.expect(1, Some(created)),
    );
    assert!(!ack.inline_applied);
    assert_eq!(acks, vec![EnqueueAck::Accepted { seq: 1 }]);
    assert_eq!(f.mailbox(), vec![0, 1]);
    assert_eq!(f.state(), None);
}

#[test]
fn a_timer_set_after_complete_in_the_same_turn_is_dropped() {
    // Found by the store_model fuzzer: the timer stayed pending on the completed actor,
    // and when it fired its message was refused but the actor's timer count kept it.
    let f = fixture();
    let id = RequestId(1);
    f.rt.block_on(f.store.enqueue(request(&f.actor, id, None)))
        .unwrap();
    let done = TurnResult::Done {
        state: b"s".to_vec(),
        effects: vec![
            Effect::Complete,
            Effect::SetTimer {
                name: "late".into(),
                due_ms: 0,
                payload: Vec::new(),
            },
        ],
    };
    f.commit_turn(0, done);
    let meta = f.store.actor_meta(&f.actor).unwrap().unwrap();
    assert_eq!(meta.status, crate::domain::ActorStatus::Completed);
    assert_eq!(meta.timers, 0);
    assert!(f.store.timers_of(&f.actor).unwrap().is_empty());
    assert_eq!(f.rt.block_on(f.store.fire_timers(u64::MAX, 10)).unwrap(), 0);
}

/// A state of `len` bytes that differ from slice to slice.
fn big_state(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 4096) as u8))
        .collect()
}

#[test]
fn a_large_state_is_written_in_slices_and_read_back_whole() {
    let f = fixture();
    let big = big_state(3 * dwell_storage::SLICE + 17, 1);
    let (ack, _) = f.commit(
        vec![(
            request(&f.actor, RequestId(1), None),
            answered(RequestId(1), b"r", &big),
        )],
        f.expect(0, None),
    );
    assert!(ack.inline_applied);
    assert_eq!(f.state().as_deref(), Some(big.as_slice()));
    assert_eq!(
        f.reads.large_entries(),
        (1, 4, 0),
        "one ref, four slices, none staged"
    );

    // Replaced by another large state: the old slices go.
    let bigger = big_state(5 * dwell_storage::SLICE, 9);
    let created = f.store.actor_meta(&f.actor).unwrap().unwrap().created_ms;
    f.commit(
        vec![(
            request(&f.actor, RequestId(2), None),
            answered(RequestId(2), b"r", &bigger),
        )],
        f.expect(1, Some(created)),
    );
    assert_eq!(f.state().as_deref(), Some(bigger.as_slice()));
    assert_eq!(f.reads.large_entries(), (1, 5, 0));

    // Replaced by a small state: no slices are left.
    f.commit(
        vec![(
            request(&f.actor, RequestId(3), None),
            answered(RequestId(3), b"r", b"small"),
        )],
        f.expect(2, Some(created)),
    );
    assert_eq!(f.state().as_deref(), Some(&b"small"[..]));
    assert_eq!(f.reads.large_entries(), (0, 0, 0));

    // Large again, then the actor is deleted: nothing of it stays.
    f.commit(
        vec![(
            request(&f.actor, RequestId(4), None),
            answered(RequestId(4), b"r", &big),
        )],
        f.expect(3, Some(created)),
    );
    assert_eq!(f.reads.large_entries(), (1, 4, 0));
    let deleted = f.rt.block_on(f.store.admin(AdminOp::DeleteActor {
        actor: f.actor.clone(),
    }));
    assert!(deleted.unwrap());
    assert_eq!(f.state(), None);
    assert_eq!(f.reads.large_entries(), (0, 0, 0));
}

#[test]
fn a_large_state_of_a_turn_that_falls_back_is_dropped_with_it() {
    let f = fixture();
    let big = big_state(2 * dwell_storage::SLICE + 1, 3);
    // The runner believed in another module version: the inline turn is only enqueued.
    let (ack, acks) = f.commit(
        vec![(
            request(&f.actor, RequestId(1), None),
            answered(RequestId(1), b"r", &big),
        )],
        f.expect_old_version(),
    );
    assert!(!ack.inline_applied);
    assert_eq!(acks, vec![EnqueueAck::Accepted { seq: 0 }]);
    assert_eq!(f.state(), None);
    assert_eq!(
        f.reads.large_entries(),
        (0, 0, 0),
        "the staged slices were dropped"
    );

    // A stale mailbox turn (its message was taken before) carrying a large state.
    let small = answered(RequestId(1), b"r", b"first").unwrap();
    f.commit_turn(0, small);
    let stale = answered(RequestId(1), b"r", &big).unwrap();
    f.commit_turn(0, stale);
    assert_eq!(f.state().as_deref(), Some(&b"first"[..]));
    assert_eq!(f.reads.large_entries(), (0, 0, 0));
}

#[test]
fn slices_staged_before_a_crash_are_dropped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let open = || open_redb(dir.path(), Arc::new(Recorder::default()), 10).unwrap();
    let (store, reads) = open();
    for index in 0..3 {
        rt.block_on(store.submit(|done| writer::Op::Stage {
            id: 42,
            index,
            bytes: vec![1; 1000],
            done,
        }))
        .unwrap();
    }
    assert_eq!(reads.large_entries(), (0, 3, 1));
    let closed = store.closed();
    drop((store, reads));
    assert!(closed.wait(std::time::Duration::from_secs(10)));
    let (_store, reads) = open();
    assert_eq!(reads.large_entries(), (0, 0, 0));
}

/// A kill while redb made a new file left it resized but without its header, and redb
/// refuses such a file for good ("magic number mismatch"): the server never started
/// again (found by the crash loop on CI). The file is now made under another name and
/// renamed into place; what a kill leaves of that is ignored.
#[test]
fn a_kill_while_the_data_file_is_created_does_not_stop_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    // What redb leaves when killed between its resize and its header write.
    std::fs::write(dir.path().join("dwell.redb.new"), vec![0u8; 1 << 20]).unwrap();
    let open = || open_redb(dir.path(), Arc::new(Recorder::default()), 10).map(|(s, _)| s);
    let store = open().expect("a start after a kill during creation");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tenant = TenantId::default_tenant();
    rt.block_on(store.put_module(tenant.clone(), "m".into(), b"w".to_vec(), "d".into()))
        .unwrap();
    let closed = store.closed();
    drop(store);
    assert!(closed.wait(std::time::Duration::from_secs(10)));
    assert!(!dir.path().join("dwell.redb.new").exists());
    let store = open().unwrap();
    assert_eq!(store.modules(&tenant).unwrap().len(), 1);
}

/// Defect: one tenant's large states held the single writer for as long as each took
/// to write, and every other tenant's commits waited behind them. Small commits next
/// to a stream of 8 MiB states must stay within 5x of their idle p99.
#[test]
fn small_commits_are_not_held_up_by_large_states() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (store, _) = open_redb(dir.path(), Arc::new(Recorder::default()), 100).unwrap();
    let tenant = TenantId::default_tenant();
    rt.block_on(store.put_module(tenant.clone(), "m".into(), b"wasm".to_vec(), "d1".into()))
        .unwrap();
    // One inline turn on `actor`, its state `state`.
    async fn turn(store: &Store, actor: &ActorId, n: u64, state: Vec<u8>) -> std::time::Duration {
        let t = std::time::Instant::now();
        let meta = store.actor_meta(actor).unwrap();
        let (done, rx) = oneshot::channel();
        let id = RequestId(u128::from(n) + 1);
        store
            .commit_batch(
                actor.clone(),
                Vec::new(),
                vec![InlineTurn {
                    req: request(actor, id, None),
                    timer: None,
                    result: answered(id, b"r", &state),
                    took_us: 0,
                    done,
                }],
                Some(Expect {
                    head_seq: meta.as_ref().map_or(0, |m| m.head_seq),
                    created_ms: meta.as_ref().map(|m| m.created_ms),
                    digest: "d1".into(),
                }),
                HISTORY,
            )
            .await
            .unwrap();
        rx.await.unwrap().unwrap();
        t.elapsed()
    }
    let p99 = |mut v: Vec<std::time::Duration>| {
        v.sort();
        v[v.len() * 99 / 100]
    };
    let quiet = ActorId::new(tenant.clone(), "m", "quiet");
    let small = |store: Store, quiet: ActorId, from: u64| async move {
        let mut times = Vec::new();
        for n in from..from + 300 {
            times.push(turn(&store, &quiet, n, b"small".to_vec()).await);
        }
        times
    };
    let idle = p99(rt.block_on(small(store.clone(), quiet.clone(), 0)));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = Arc::new(big_state(8 << 20, 7));
    let big: Vec<_> = (0..4)
        .map(|b| {
            let (store, stop, state) = (store.clone(), stop.clone(), state.clone());
            let actor = ActorId::new(tenant.clone(), "m", format!("big{b}"));
            rt.spawn(async move {
                let mut times = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = times.len() as u64;
                    let mut state = state.to_vec();
                    state[0] = n as u8;
                    times.push(turn(&store, &actor, 1_000_000 * (b + 1) + n, state).await);
                }
                times
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let loaded = p99(rt.block_on(small(store.clone(), quiet.clone(), 1000)));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut large: Vec<_> = big
        .into_iter()
        .flat_map(|h| rt.block_on(h).unwrap())
        .collect();
    large.sort();
    let large_turns = large.len();
    let large_median = large.get(large_turns / 2).copied().unwrap_or_default();
    eprintln!(
        "small commits p99: idle {idle:?}, next to {large_turns} 8 MiB states \
         (median {large_median:?} each) {loaded:?}"
    );
    assert!(
        large_turns >= 4,
        "large states were really written: {large_turns}"
    );
    // No commit carried a large state whole: at most one batch's worth of slices, and
    // the small turns' own states.
    let stats = rt.block_on(store.writer_stats()).unwrap();
    assert!(
        stats.largest_state_write <= (dwell_storage::BATCH_SLICE_BYTES + (64 << 10)) as u64,
        "a commit wrote {} state bytes at once",
        stats.largest_state_write
    );
    // What is left is the disk itself busy writing the large states (whole, they held
    // small commits for ~100 ms here); the end-to-end noisy-neighbour test bounds the
    // quiet tenant's p99 at 5x idle. On a disk with fsync stalls (CI's: 80 ms at times)
    // the bound is relative: a small commit queued behind a whole large state would
    // wait about a large turn; behind one batch of slices (a 32nd of it), far less.
    let bound = (idle * 5 + std::time::Duration::from_millis(25)).max(large_median / 2);
    assert!(
        loaded <= bound,
        "small commits' p99 went from {idle:?} to {loaded:?} next to large states \
         (a large turn took {large_median:?})"
    );
}

//! The conformance suite: what every storage backend must do under the turn core, as
//! scenarios over a [`Backend`] plus a model-based test that runs random operation
//! sequences against the backend and against [`MemTables`] (the reference) and compares
//! everything observable after each step.
//!
//! A backend's crate runs it all with [`conformance_tests!`](crate::conformance_tests):
//! `dwell_core::conformance_tests!(my_backend_factory);` generates one `#[test]` per
//! scenario. Covered: exactly-once under stale and repeated turns, every inline-turn
//! fall-back branch, timers (once, never early, replace, cancel, cleared by completion),
//! outbox transitions, idempotency keys and their expiry, actor quotas, actor deletion,
//! and the tenant deletion cascade.

use dwell_storage::memory::MemTables;
use dwell_storage::{Error, Tables};
use dwell_types::records::{KeyRecord, ModuleRecord, ModuleVersion, TenantRecord};
use dwell_types::{
    ActorId, ActorStatus, Effect, Envelope, HttpCallSpec, MessageKind, QuotaOverrides, ReplyTo,
    RequestId, RequestStatus, TenantId, TurnResult, UnixMs,
};

use crate::ops::{
    AdminOp, CommittedTurn, EnqueueAck, EnqueueRequest, Expect, Idempotency, Inline, NewRequest,
    Notice, OutboxUpdate, TurnsAck, WriterConfig,
};
use crate::tx::{InlineAck, Tx};

mod model;
mod scenarios;

pub use model::{random_operation_sequences_match_the_reference, random_sequences};
pub use scenarios::*;

/// A backend under test: the contract's [`dwell_storage::Backend`].
pub use dwell_storage::Backend;

/// The reference backend.
#[derive(Default)]
pub struct Memory(pub MemTables);

impl Backend for Memory {
    type Tables<'t> = MemTables;
    fn write<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut MemTables) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut next = self.0.clone();
        let out = f(&mut next)?;
        self.0 = next;
        Ok(out)
    }
}

/// A backend with a clock and the notices of its last write.
pub struct Rig<B: Backend> {
    pub backend: B,
    pub now: UnixMs,
    pub config: WriterConfig,
    pub notices: Vec<Notice>,
    /// Each write transaction of [`Rig::try_tx`] starts with [`Tables::prefetch`] of
    /// these actors and their messages 0..8 (as the writer does for its batches).
    pub prefetch: Vec<ActorId>,
}

/// The history every commit of the suite keeps: few records and fewer states, so that
/// retention is exercised.
pub const HISTORY: dwell_types::history::Retention = dwell_types::history::Retention {
    turns: 4,
    states: 2,
    age_ms: 0,
};

pub const TENANT: &str = "t1";
pub const OTHER: &str = "t2";

impl<B: Backend> Rig<B> {
    /// `backend` holding module `m` (digest `d1`) for tenants [`TENANT`] and [`OTHER`].
    pub fn new(backend: B) -> Self {
        let mut rig = Rig {
            backend,
            now: 1_000,
            config: WriterConfig {
                max_actors: 100,
                placement: None,
            },
            notices: Vec::new(),
            prefetch: Vec::new(),
        };
        for t in [TENANT, OTHER] {
            rig.tx(|tx| {
                tx.admin(AdminOp::PutTenant {
                    name: t.into(),
                    record: TenantRecord {
                        created_ms: 0,
                        quotas: QuotaOverrides::default(),
                        webhook_secret: String::new(),
                        allow_http: Vec::new(),
                        id: None,
                    },
                    create_only: true,
                })?;
                tx.put_module(&TenantId(t.into()), "m", b"wasm", "d1")
            });
        }
        rig
    }

    /// One committed write transaction through the core; panics if it fails.
    pub fn tx<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut Tx<'_, B::Tables<'t>>) -> Result<R, Error>,
    ) -> R {
        self.try_tx(f).expect("write transaction")
    }

    pub fn try_tx<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut Tx<'_, B::Tables<'t>>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let (now, config) = (self.now, self.config.clone());
        let keys: Vec<String> = self.prefetch.iter().map(ActorId::storage_key).collect();
        let actors: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mail: Vec<(&str, u64)> = actors
            .iter()
            .flat_map(|k| (0..8).map(move |s| (*k, s)))
            .collect();
        let mut notices = Vec::new();
        let out = self.backend.write(|t| {
            t.prefetch(&actors, &mail)?;
            let mut tx = Tx::new(t, now, &config, &mut notices);
            f(&mut tx)
        });
        self.notices = if out.is_ok() { notices } else { Vec::new() };
        out
    }

    /// Read through a transaction (committed, writing nothing).
    pub fn read<R>(&mut self, f: impl for<'t> FnOnce(&B::Tables<'t>) -> Result<R, Error>) -> R {
        self.backend.write(|t| f(t)).expect("read")
    }

    pub fn enqueue(&mut self, actor: &ActorId, env: Envelope) -> EnqueueAck {
        self.tx(|tx| tx.enqueue_request(req(actor, env)))
    }

    pub fn call(&mut self, actor: &ActorId, id: u128, key: Option<(&str, u8)>) -> EnqueueAck {
        let mut r = req(actor, request(id));
        r.request = Some(NewRequest {
            id: RequestId(id),
            callback_url: None,
        });
        r.idempotency = key.map(|(k, f)| Idempotency {
            key: k.into(),
            expires_ms: self.now + 10_000,
            fingerprint: [f; 32],
        });
        self.tx(|tx| tx.enqueue_request(r))
    }

    pub fn commit(&mut self, actor: &ActorId, seq: u64, result: TurnResult) -> TurnsAck {
        let turns = vec![CommittedTurn {
            seq,
            result,
            took_us: 7,
        }];
        self.tx(|tx| tx.commit_turns(actor, turns, Vec::new(), None, None, HISTORY))
            .0
    }

    pub fn commit_inline(
        &mut self,
        actor: &ActorId,
        inline: Vec<Inline>,
        expect: Option<Expect>,
    ) -> (TurnsAck, Vec<InlineAck>) {
        self.tx(|tx| tx.commit_turns(actor, Vec::new(), inline, expect, None, HISTORY))
    }

    pub fn meta(&mut self, actor: &ActorId) -> Option<dwell_types::records::ActorMeta> {
        let key = actor.storage_key();
        self.read(|t| t.actor(&key))
    }

    pub fn mail(&mut self, actor: &ActorId) -> Vec<(u64, Envelope)> {
        let key = actor.storage_key();
        self.read(|t| t.mail(&key))
    }

    pub fn state(&mut self, actor: &ActorId) -> Option<Vec<u8>> {
        let key = actor.storage_key();
        self.read(|t| t.state(&key))
    }

    pub fn request_status(&mut self, id: u128) -> Option<RequestStatus> {
        self.read(|t| t.request(id)).map(|r| r.status)
    }
}

pub fn actor(tenant: &str, key: &str) -> ActorId {
    ActorId::new(TenantId(tenant.into()), "m", key)
}

pub fn event(body: &[u8]) -> Envelope {
    Envelope {
        kind: MessageKind::Event,
        body: body.to_vec(),
        enqueued_ms: 0,
        trace: None,
    }
}

pub fn request(id: u128) -> Envelope {
    Envelope {
        kind: MessageKind::Request {
            request: RequestId(id),
        },
        body: Vec::new(),
        enqueued_ms: 0,
        trace: None,
    }
}

pub fn req(actor: &ActorId, envelope: Envelope) -> EnqueueRequest {
    EnqueueRequest {
        actor: actor.clone(),
        envelope,
        request: None,
        idempotency: None,
    }
}

/// A turn that leaves `state` and has `effects`.
pub fn done(state: &[u8], effects: Vec<Effect>) -> TurnResult {
    TurnResult::Done {
        state: state.to_vec(),
        effects,
    }
}

pub fn reply(id: u128, body: &[u8]) -> Effect {
    Effect::Reply {
        to: ReplyTo::Request(RequestId(id)),
        outcome: Ok(body.to_vec()),
        refusal: None,
    }
}

pub fn set_timer(name: &str, due_ms: UnixMs) -> Effect {
    Effect::SetTimer {
        name: name.into(),
        due_ms,
        payload: name.as_bytes().to_vec(),
    }
}

pub fn http_call(call_id: &str) -> Effect {
    Effect::HttpCall(HttpCallSpec {
        call_id: call_id.into(),
        method: "GET".into(),
        url: "https://example.test/".into(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout_ms: 1000,
        max_attempts: 3,
        trace: None,
    })
}

pub fn api_key(tenant: &str) -> KeyRecord {
    KeyRecord {
        tenant: tenant.into(),
        hash: vec![1; 32],
        created_ms: 0,
    }
}

pub fn module_record(digest: &str) -> ModuleRecord {
    ModuleRecord {
        versions: vec![ModuleVersion {
            version: 1,
            digest: digest.into(),
            size: 4,
            created_ms: 0,
        }],
    }
}

/// Everything observable through the contract, in a comparable form (outbox ids are
/// random, so entries are compared without them).
pub fn dump<T: Tables>(t: &T, tenants: &[&str]) -> Result<String, Error> {
    use std::fmt::Write;
    let mut out = String::new();
    for key in t.actor_keys("", usize::MAX)? {
        // Where a backend keeps the history is its own business; what it shows is below.
        let meta = t.actor(&key)?.map(|mut m| {
            m.history = Default::default();
            m
        });
        let mut timers = Vec::new();
        for name in t.timer_names(&key)? {
            timers.push((name.clone(), t.timer_due(&key, &name)?));
        }
        let _ = writeln!(
            out,
            "actor {key}: {meta:?}\n  state {:?}\n  mail {:?}\n  timers {timers:?}",
            t.state(&key)?,
            t.mail(&key)?
        );
        for (seq, rec) in t.history(&key, None, usize::MAX)? {
            let state = t.history_state(&key, seq)?;
            let _ = writeln!(out, "  turn {seq}: {rec:?} {state:?}");
        }
    }
    for (id, r) in t.requests_from(0, usize::MAX)? {
        let _ = writeln!(out, "request {id}: {r:?}");
    }
    let mut outbox: Vec<String> = t
        .outbox_from(0, usize::MAX)?
        .into_iter()
        .map(|(_, e)| format!("{e:?}"))
        .collect();
    outbox.sort();
    let _ = writeln!(out, "outbox {outbox:?}");
    for tenant in tenants {
        let _ = writeln!(
            out,
            "tenant {tenant}: {:?} actors {} keys {:?} modules {:?}",
            t.tenant(tenant)?,
            t.actor_count(tenant)?,
            t.idempotency_keys(tenant, usize::MAX)?,
            t.module_keys(&format!("{tenant}/"))?,
        );
    }
    let _ = writeln!(out, "api keys {:?}", t.api_keys()?);
    let _ = writeln!(out, "due timers {:?}", t.due_timers(u64::MAX, usize::MAX)?);
    Ok(out)
}

/// One `#[test]` per conformance scenario for the backend `make()` returns; or, with
/// `in_one:`, every scenario called in turn inside the caller's one test (for a backend
/// whose tests share a server), `make` being a `Fn() -> B` that is `Copy`. The list of
/// scenarios is written once, here.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(scenarios: $make);
        $crate::conformance_tests!(@each $make; random_operation_sequences_match_the_reference);
    };
    (scenarios: $make:expr) => {
        $crate::conformance_tests!(@list each, $make);
    };
    (in_one: $make:expr) => {
        $crate::conformance_tests!(@list call, $make);
    };
    (@list $how:ident, $make:expr) => {
        $crate::conformance_tests!(@$how $make;
            an_enqueue_creates_the_actor_pinned_to_its_module,
            the_actor_quota_counts_creations_and_deletions,
            a_turn_applies_exactly_once_even_when_committed_again,
            a_request_is_settled_by_the_first_answer_only,
            a_dead_letter_fails_its_request_and_can_be_retried,
            an_inline_turn_applies_only_to_the_actor_as_the_runner_saw_it,
            every_inline_fall_back_enqueues_and_discards_the_outcome,
            timers_fire_once_never_early_and_can_be_replaced_or_cancelled,
            completion_cancels_timers_and_refuses_more_mail,
            the_outbox_retries_then_finishes_with_a_result_message,
            idempotency_keys_repeat_conflict_and_expire,
            deleting_an_actor_fails_its_waiting_requests,
            deleting_a_tenant_purges_everything_of_it_and_nothing_else,
            large_states_point_at_staged_slices,
            staged_ids_across_the_whole_u64_range_stay_apart,
            one_transaction_reads_its_own_writes_and_its_prefetched_rows,
            each_turn_leaves_a_history_record_within_its_retention,
            an_upgrade_switches_version_and_state_together_and_can_be_rolled_back,
            a_message_for_an_actor_of_another_node_waits_in_the_inbox_and_is_delivered_once,
            a_deleted_tenant_is_purged_by_each_node_for_its_own_actors,
        );
    };
    (@call $make:expr; $($name:ident),* $(,)?) => {
        $(
            $crate::conformance::$name($make);
        )*
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::$name(|| $make);
            }
        )*
    };
}

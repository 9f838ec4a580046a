//! The `host` interface as the guest sees it: every call only records an effect for the
//! current turn, after checking it against the limits. Nothing here performs I/O.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{
    ActorId, Effect, HttpCallSpec, Limits, RefusalCode, ReplyTo, TenantId, UnixMs, validate_name,
};

use super::HostState;
use super::bindings::dwell::actor::{host, types};

/// What the executor may ask about the outside world while recording effects.
pub trait ModuleDirectory: Send + Sync + 'static {
    /// Does `module` exist for `tenant`? (`send`/`ask` to an unknown module is refused.)
    fn module_exists(&self, tenant: &TenantId, module: &str) -> bool;
    /// May `tenant`'s guests call `url`? `Err` says why not.
    fn check_outbound(&self, tenant: &TenantId, url: &str) -> Result<(), String>;
}

/// The turn being recorded.
pub(super) struct TurnCtx {
    pub actor: ActorId,
    pub now_ms: UnixMs,
    pub started: Instant,
    pub budget: Duration,
    /// CPU time used by the turn so far.
    pub cpu: super::cpu::CpuMeter,
    effects: Vec<Effect>,
    effect_bytes: usize,
    /// Pending timers before the turn, and names newly set during it.
    timers_before: u32,
    timers_set: Vec<String>,
    /// How the guest classified the refusal it is about to return (`refuse-as`).
    refusal: Option<RefusalCode>,
    limits: Arc<Limits>,
    directory: Arc<dyn ModuleDirectory>,
}

impl TurnCtx {
    pub fn new(limits: Arc<Limits>, directory: Arc<dyn ModuleDirectory>) -> Self {
        TurnCtx {
            actor: ActorId::new(TenantId(String::new()), "", ""),
            now_ms: 0,
            started: Instant::now(),
            budget: limits.turn_time,
            cpu: Default::default(),
            effects: Vec::new(),
            effect_bytes: 0,
            timers_before: 0,
            timers_set: Vec::new(),
            refusal: None,
            limits,
            directory,
        }
    }

    pub fn begin(&mut self, actor: &ActorId, now_ms: UnixMs, timers: u32, limits: &Arc<Limits>) {
        if !Arc::ptr_eq(&self.limits, limits) {
            self.limits = limits.clone();
        }
        if &self.actor != actor {
            self.actor = actor.clone();
        }
        self.now_ms = now_ms;
        self.started = Instant::now();
        self.budget = self.limits.turn_time;
        self.cpu.start();
        self.effects.clear();
        self.effect_bytes = 0;
        self.timers_before = timers;
        self.timers_set.clear();
        self.refusal = None;
    }

    /// The refusal class the guest set in this turn, if any.
    pub fn take_refusal(&mut self) -> Option<RefusalCode> {
        self.refusal.take()
    }

    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Record an effect carrying `bytes` of payload, within the per-turn limits.
    fn record(&mut self, bytes: usize, effect: Effect) -> Result<(), String> {
        if self.effects.len() >= self.limits.effects_per_turn {
            return Err(format!(
                "a turn may record at most {} effects",
                self.limits.effects_per_turn
            ));
        }
        if bytes > self.limits.message_bytes {
            return Err(format!(
                "payload of {bytes} bytes is over the message limit of {} bytes",
                self.limits.message_bytes
            ));
        }
        // All payloads of one turn together: a bounded multiple of the message limit.
        let total = self.effect_bytes + bytes;
        if total > self.limits.message_bytes.saturating_mul(16) {
            return Err("this turn's effects are too large in total".to_owned());
        }
        self.effect_bytes = total;
        self.effects.push(effect);
        Ok(())
    }

    fn target(&self, r: types::ActorRef) -> Result<ActorId, String> {
        validate_name("module", &r.module)?;
        validate_name("actor key", &r.key)?;
        if !self.directory.module_exists(&self.actor.tenant, &r.module) {
            return Err(format!("no module named {:?}", r.module));
        }
        Ok(ActorId::new(self.actor.tenant.clone(), r.module, r.key))
    }

    fn reply_to(&self, handle: &str) -> Result<ReplyTo, String> {
        ReplyTo::from_handle(handle, &self.actor.tenant)
            .ok_or_else(|| format!("{handle:?} is not a reply handle"))
    }
}

impl types::Host for HostState {}

fn refusal_code(code: types::RefusalCode) -> RefusalCode {
    match code {
        types::RefusalCode::Invalid => RefusalCode::Invalid,
        types::RefusalCode::NotFound => RefusalCode::NotFound,
        types::RefusalCode::Conflict => RefusalCode::Conflict,
        types::RefusalCode::FailedPrecondition => RefusalCode::FailedPrecondition,
    }
}

impl host::Host for HostState {
    fn reply(&mut self, reply_to: String, body: Vec<u8>) -> Result<(), String> {
        let to = self.turn.reply_to(&reply_to)?;
        self.turn.record(
            body.len(),
            Effect::Reply {
                to,
                outcome: Ok(body),
                refusal: None,
            },
        )
    }

    fn reject(&mut self, reply_to: String, error: String) -> Result<(), String> {
        let to = self.turn.reply_to(&reply_to)?;
        self.turn.record(
            error.len(),
            Effect::Reply {
                to,
                outcome: Err(error),
                refusal: None,
            },
        )
    }

    fn reject_as(
        &mut self,
        reply_to: String,
        code: types::RefusalCode,
        error: String,
    ) -> Result<(), String> {
        let to = self.turn.reply_to(&reply_to)?;
        self.turn.record(
            error.len(),
            Effect::Reply {
                to,
                outcome: Err(error),
                refusal: Some(refusal_code(code)),
            },
        )
    }

    fn refuse_as(&mut self, code: types::RefusalCode) {
        self.turn.refusal = Some(refusal_code(code));
    }

    fn send(&mut self, target: types::ActorRef, body: Vec<u8>) -> Result<(), String> {
        let to = self.turn.target(target)?;
        self.turn.record(body.len(), Effect::Send { to, body })
    }

    fn ask(
        &mut self,
        target: types::ActorRef,
        body: Vec<u8>,
        correlation: String,
    ) -> Result<(), String> {
        let to = self.turn.target(target)?;
        if correlation.len() > 256 {
            return Err("correlation must be at most 256 bytes".into());
        }
        self.turn.record(
            body.len() + correlation.len(),
            Effect::Ask {
                to,
                body,
                correlation,
            },
        )
    }

    fn set_timer(&mut self, name: String, due_ms: u64, payload: Vec<u8>) -> Result<(), String> {
        validate_name("timer name", &name)?;
        let turn = &mut self.turn;
        if !turn.timers_set.contains(&name) {
            // A replaced timer is counted as new: conservative at the limit.
            let would_be = turn.timers_before as usize + turn.timers_set.len() + 1;
            if would_be > turn.limits.timers_per_actor {
                return Err(format!(
                    "an actor may have at most {} pending timers",
                    turn.limits.timers_per_actor
                ));
            }
            turn.timers_set.push(name.clone());
        }
        self.turn.record(
            payload.len(),
            Effect::SetTimer {
                name,
                due_ms,
                payload,
            },
        )
    }

    fn cancel_timer(&mut self, name: String) {
        let _ = self.turn.record(0, Effect::CancelTimer { name });
    }

    fn http_call(&mut self, call_id: String, request: types::HttpRequest) -> Result<(), String> {
        if call_id.is_empty() || call_id.len() > 256 {
            return Err("call-id must be 1 to 256 bytes".into());
        }
        self.turn
            .directory
            .check_outbound(&self.turn.actor.tenant, &request.url)?;
        let method = request.method.to_ascii_uppercase();
        if !matches!(
            method.as_str(),
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
        ) {
            return Err(format!("unsupported HTTP method {method:?}"));
        }
        let size = request.body.len()
            + request
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        self.turn.record(
            size,
            Effect::HttpCall(HttpCallSpec {
                call_id,
                method,
                url: request.url,
                headers: request.headers,
                body: request.body,
                timeout_ms: request.timeout_ms,
                max_attempts: request.max_attempts,
            }),
        )
    }

    fn complete(&mut self) {
        let _ = self.turn.record(0, Effect::Complete);
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        let actor = &self.turn.actor;
        let message: String = message.chars().take(2048).collect();
        match level {
            types::LogLevel::Trace => tracing::trace!(target: "guest", %actor, "{message}"),
            types::LogLevel::Debug => tracing::debug!(target: "guest", %actor, "{message}"),
            types::LogLevel::Info => tracing::info!(target: "guest", %actor, "{message}"),
            types::LogLevel::Warn => tracing::warn!(target: "guest", %actor, "{message}"),
            types::LogLevel::Error => tracing::error!(target: "guest", %actor, "{message}"),
        }
    }

    fn now(&mut self) -> u64 {
        self.turn.now_ms
    }

    fn self_ref(&mut self) -> types::ActorRef {
        types::ActorRef {
            module: self.turn.actor.module.clone(),
            key: self.turn.actor.key.clone(),
        }
    }
}

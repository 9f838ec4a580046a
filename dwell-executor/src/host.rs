//! The `host` interface as the guest sees it: every call only records an effect for the
//! current turn, after checking it against the limits. Nothing here performs I/O.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dwell_types::{
    ActorId, Effect, HttpCallSpec, Limits, RefusalCode, ReplyTo, TenantId, TimerNames, UnixMs,
    validate_name,
};

use super::HostState;
use super::bindings::dwell::actor::{host, types};

/// What the executor may ask about the outside world while recording effects.
pub trait ModuleDirectory: Send + Sync + 'static {
    /// Does `module` exist for `tenant`? (`send`/`ask` to an unknown module is refused.)
    fn module_exists(&self, tenant: &TenantId, module: &str) -> bool;
    /// May `tenant`'s guests call `url`? `Err` says why not.
    fn check_outbound(&self, tenant: &TenantId, url: &str) -> Result<(), String>;
    /// May `tenant`'s guests write `bytes` more of log now (its log rate)?
    fn admit_log(&self, tenant: &TenantId, bytes: usize) -> bool;
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
    /// Pending timers before the turn (until the turn ends), what the turn set (`true`)
    /// or cancelled (`false`) by name, and how many are pending now.
    timers: Option<Arc<TimerNames>>,
    timer_changes: HashMap<String, bool>,
    timer_count: usize,
    /// How the guest classified the refusal it is about to return (`refuse-as`).
    refusal: Option<RefusalCode>,
    /// Log lines and bytes this turn wrote, and lines it was not allowed to write.
    log_lines: usize,
    log_bytes: usize,
    log_dropped: usize,
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
            timers: None,
            timer_changes: HashMap::new(),
            timer_count: 0,
            refusal: None,
            log_lines: 0,
            log_bytes: 0,
            log_dropped: 0,
            limits,
            directory,
        }
    }

    pub fn begin(
        &mut self,
        actor: &ActorId,
        now_ms: UnixMs,
        timers: Arc<TimerNames>,
        limits: &Arc<Limits>,
    ) {
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
        self.timer_count = timers.len();
        self.timers = Some(timers);
        self.timer_changes.clear();
        self.refusal = None;
        self.log_lines = 0;
        self.log_bytes = 0;
        self.log_dropped = 0;
    }

    /// Say, once per turn, how many guest log lines were held back by the limits.
    pub fn end_logs(&mut self) {
        if self.log_dropped > 0 {
            tracing::warn!(
                target: "guest",
                tenant = %self.actor.tenant,
                actor = %self.actor,
                dropped = self.log_dropped,
                "guest log lines dropped (over the per-turn or per-tenant log limit)"
            );
            self.log_dropped = 0;
        }
    }

    /// The refusal class the guest set in this turn, if any.
    pub fn take_refusal(&mut self) -> Option<RefusalCode> {
        self.refusal.take()
    }

    /// The turn's effects; the turn is over (its view of the timers is let go, so the
    /// runner can update its own without a copy).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        self.timers = None;
        std::mem::take(&mut self.effects)
    }

    /// Is timer `name` pending at this point of the turn?
    fn timer_pending(&self, name: &str) -> bool {
        match self.timer_changes.get(name) {
            Some(&set) => set,
            None => self.timers.as_ref().is_some_and(|t| t.contains(name)),
        }
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
        // Replacing a pending timer adds none; a new one must fit under the limit, counted
        // exactly from the actor's pending timers and this turn's sets and cancels.
        let new = !turn.timer_pending(&name);
        if new && turn.timer_count >= turn.limits.timers_per_actor {
            return Err(format!(
                "an actor may have at most {} pending timers",
                turn.limits.timers_per_actor
            ));
        }
        turn.record(
            payload.len(),
            Effect::SetTimer {
                name: name.clone(),
                due_ms,
                payload,
            },
        )?;
        turn.timer_count += usize::from(new);
        turn.timer_changes.insert(name, true);
        Ok(())
    }

    fn cancel_timer(&mut self, name: String) {
        let turn = &mut self.turn;
        let pending = turn.timer_pending(&name);
        if turn
            .record(0, Effect::CancelTimer { name: name.clone() })
            .is_ok()
        {
            turn.timer_count -= usize::from(pending);
            turn.timer_changes.insert(name, false);
        }
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
                // Stamped by the writer with the turn's context.
                trace: None,
            }),
        )
    }

    fn complete(&mut self) {
        let _ = self.turn.record(0, Effect::Complete);
    }

    /// The last step a turn names counts: a later call replaces the earlier one.
    fn step(&mut self, label: String) {
        let label = dwell_types::history::cut(&label, dwell_types::history::LABEL_LIMIT);
        let named = self.turn.effects.iter_mut().find_map(|e| match e {
            Effect::Step { label } => Some(label),
            _ => None,
        });
        match named {
            Some(old) => *old = label,
            None => {
                let _ = self.turn.record(0, Effect::Step { label });
            }
        }
    }

    /// A guest's log line, as data: escaped (a newline or a terminal escape cannot forge
    /// a line of the server's log), tagged with its tenant and actor, and bounded per turn
    /// and per tenant (the rest is counted and reported once at the end of the turn).
    fn log(&mut self, level: types::LogLevel, message: String) {
        let turn = &mut self.turn;
        let text: String = message.chars().take(1024).collect::<String>();
        let text = text.escape_debug().to_string();
        if turn.log_lines >= turn.limits.log_lines_per_turn
            || turn.log_bytes + text.len() > turn.limits.log_bytes_per_turn
            || !turn.directory.admit_log(&turn.actor.tenant, text.len())
        {
            turn.log_dropped += 1;
            return;
        }
        turn.log_lines += 1;
        turn.log_bytes += text.len();
        let (tenant, actor) = (&turn.actor.tenant, &turn.actor);
        match level {
            types::LogLevel::Trace => tracing::trace!(target: "guest", %tenant, %actor, "{text}"),
            types::LogLevel::Debug => tracing::debug!(target: "guest", %tenant, %actor, "{text}"),
            types::LogLevel::Info => tracing::info!(target: "guest", %tenant, %actor, "{text}"),
            types::LogLevel::Warn => tracing::warn!(target: "guest", %tenant, %actor, "{text}"),
            types::LogLevel::Error => tracing::error!(target: "guest", %tenant, %actor, "{text}"),
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

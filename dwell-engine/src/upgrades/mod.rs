//! Live upgrades: moving a module's running actors from one version to another (the
//! records are `dwell_types::upgrade`).
//!
//! A run first dry-runs: for each selected actor it calls the new version's `migrate` on
//! the actor's state, and replays the actor's recent recorded turns on the new version in
//! a sandbox — the recorded state before the turn (migrated) and the recorded message in,
//! nothing performed — comparing the outcome, the state (against the migrated recorded
//! state after) and the effects with what the old version did. `apply` then moves the
//! selected actors one at a time, each in its own commit (`AdminOp::UpgradeActor`: the
//! switch lands only between two turns, with the migrated state of exactly the turn it
//! follows); a `canary` moves a share, watches the moved actors' next turns in their
//! history, and rolls them back or moves the rest. A run's record is written at every
//! phase and every [`SAVE_EVERY`] moves; an active run is resumed when the engine
//! starts, and because each actor's switch is one commit, none is ever half-moved.
//! `sandbox` holds what runs nothing for real: the dry run and the dead-letter hotfix.
//! Long because a run's life (plan, move, watch, roll back, resume) is one state machine,
//! kept in one place.

use std::sync::Arc;
use std::time::Duration;

use dwell_types::history::Outcome;
use dwell_types::upgrade::{
    CanaryReport, Mode, RUN_PREFIX, Report, RunStatus, Select, UpgradePlan, UpgradeRun,
    UpgradeUndo, in_percent, run_key, tenant_prefixes, undo_key, undo_prefix,
};

use crate::domain::records::ActorMeta;
use crate::domain::{ActorId, Envelope, Limits, MessageKind, TenantId};
use crate::executor::{CompiledModule, MigrateExec, TurnInput};
use crate::visibility::ActorFilter;
use crate::{Engine, Error, runner, store};

mod sandbox;

pub use sandbox::Hotfix;

/// A run's record is saved after this many moves (and at every phase).
const SAVE_EVERY: u64 = 100;
/// How often a canary looks at its actors' history.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// A run of at most this many actors answers with its dry run done; a larger one
/// answers `planning` and dry-runs in the background.
const PLAN_INLINE: usize = 1000;
/// Tries to move one actor whose turns keep committing under the migration.
const MOVE_TRIES: usize = 5;
/// Bounds of a plan (the API document states them too).
const MAX_WATCHED_TURNS: u32 = 1000;
const MAX_WATCH_S: u64 = 7 * 24 * 3600;
const MAX_REPLAY: u32 = 1000;
const MAX_KEYS: usize = 10_000;

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("no module named {0:?}")]
    UnknownModule(String),
    #[error("module {module:?} has no version {version}")]
    UnknownVersion { module: String, version: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] Error),
}

impl From<store::Error> for UpgradeError {
    fn from(e: store::Error) -> Self {
        UpgradeError::Engine(e.into())
    }
}

/// One version of the module, compiled.
struct Version {
    number: u32,
    digest: String,
    module: Arc<CompiledModule>,
}

/// Everything a run works with.
struct Ctx {
    tenant: TenantId,
    module: String,
    from: Version,
    to: Version,
    limits: Arc<Limits>,
}

impl Engine {
    /// Start an upgrade run of `tenant`'s module `name`: the dry run happens now; an
    /// `apply` or `canary` whose dry run found no problem (or that is forced) goes on in
    /// the background. Answers the run as stored.
    pub async fn start_upgrade(
        &self,
        tenant: &TenantId,
        name: &str,
        plan: UpgradePlan,
    ) -> Result<UpgradeRun, UpgradeError> {
        if self.inner.config.placement.is_some() {
            // A run moves each actor in a commit of the node that runs it; the driver
            // cannot move another node's actors yet (see README, Cluster mode).
            return Err(UpgradeError::Invalid(
                "upgrade runs are not available in cluster mode yet: a run moves actors on one node only; new actors start on the newest version".into(),
            ));
        }
        if plan.from == plan.to {
            return Err(UpgradeError::Invalid(
                "`from` and `to` are the same version".into(),
            ));
        }
        if let Select::Percent { percent } = plan.select
            && percent > 100
        {
            return Err(UpgradeError::Invalid("`percent` is at most 100".into()));
        }
        let c = &plan.canary;
        if c.percent > 100
            || !(0.0..=1.0).contains(&c.max_failure_ratio)
            || c.turns > MAX_WATCHED_TURNS
            || c.wait_s > MAX_WATCH_S
        {
            return Err(UpgradeError::Invalid(format!(
                "`canary`: `percent` is at most 100, `max_failure_ratio` within 0..1, `turns` \
                 at most {MAX_WATCHED_TURNS} and `wait_s` at most {MAX_WATCH_S}"
            )));
        }
        if plan.replay_turns > MAX_REPLAY {
            return Err(UpgradeError::Invalid(format!(
                "`replay_turns` is at most {MAX_REPLAY}"
            )));
        }
        if let Select::Keys { keys } = &plan.select
            && keys.len() > MAX_KEYS
        {
            return Err(UpgradeError::Invalid(format!(
                "`select.keys` names at most {MAX_KEYS} actors"
            )));
        }
        let cx = self.upgrade_ctx(tenant, name, (plan.from, plan.to)).await?;
        let now = self.now_ms();
        let mut run = UpgradeRun {
            id: format!("up_{:016x}", rand::random::<u64>()),
            module: name.to_owned(),
            plan,
            status: RunStatus::Planned,
            reason: None,
            created_ms: now,
            updated_ms: now,
            watch_since_ms: None,
            report: Report::default(),
        };
        let selected = self.selected(&cx, &run.plan.select)?;
        if selected.len() <= PLAN_INLINE {
            self.plan(&cx, &mut run, &selected).await?;
        } else {
            // Many actors: the answer does not wait for the dry run.
            run.status = RunStatus::Planning;
            run.report.selected = selected.len() as u64;
        }
        self.save_run(&cx.tenant, &run).await?;
        if run.status.active() {
            let engine = self.clone();
            let answer = run.clone();
            self.inner
                .rt
                .spawn(async move { engine.drive(cx, run).await });
            return Ok(answer);
        }
        Ok(run)
    }

    /// Dry-run `selected` and decide what the run does next.
    async fn plan(
        &self,
        cx: &Ctx,
        run: &mut UpgradeRun,
        selected: &[ActorId],
    ) -> Result<(), Error> {
        run.report = self.dry_run(cx, selected, run.plan.replay_turns).await?;
        run.status = match run.plan.mode {
            Mode::DryRun => RunStatus::Planned,
            _ if run.report.problems > 0 && !run.plan.force => {
                run.reason = Some(format!(
                    "the dry run found problems with {} actor(s); not applied (force to apply anyway)",
                    run.report.problems
                ));
                RunStatus::Refused
            }
            _ => RunStatus::Applying,
        };
        Ok(())
    }

    /// One run of `tenant`'s module `name`.
    pub fn upgrade_run(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
    ) -> Result<Option<UpgradeRun>, Error> {
        Ok(self
            .inner
            .store
            .meta_value(&run_key(&tenant.0, name, id))?
            .and_then(|b| UpgradeRun::from_bytes(&b)))
    }

    /// The runs of `tenant`'s module `name`, newest first.
    pub fn upgrade_runs(&self, tenant: &TenantId, name: &str) -> Result<Vec<UpgradeRun>, Error> {
        let prefix = run_key(&tenant.0, name, "");
        let mut runs = Vec::new();
        for key in self
            .inner
            .store
            .reads()
            .meta_keys(&prefix)
            .map_err(store::Error::from)?
        {
            if let Some(run) = self
                .inner
                .store
                .meta_value(&key)?
                .and_then(|b| UpgradeRun::from_bytes(&b))
            {
                runs.push(run);
            }
        }
        runs.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        Ok(runs)
    }

    /// Roll back the actors a run moved (each only if no turn changed its new state
    /// since); `None` if there is no such run.
    pub async fn rollback_upgrade(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &str,
    ) -> Result<Option<UpgradeRun>, Error> {
        let Some(mut run) = self.upgrade_run(tenant, name, id)? else {
            return Ok(None);
        };
        run.status = RunStatus::RollingBack;
        run.reason = Some("rolled back on request".into());
        self.save_run(tenant, &run).await?;
        self.roll_back(tenant, &mut run).await?;
        Ok(Some(run))
    }

    /// Resume the runs a stop interrupted.
    pub(crate) async fn resume_upgrades(&self) {
        let keys = match self.inner.store.reads().meta_keys(RUN_PREFIX) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot list upgrade runs");
                return;
            }
        };
        for key in keys {
            let Some(run) = self
                .inner
                .store
                .meta_value(&key)
                .ok()
                .flatten()
                .and_then(|b| UpgradeRun::from_bytes(&b))
                .filter(|r| r.status.active())
            else {
                continue;
            };
            // `upgrade/<tenant>/<module>/<id>`
            let Some(tenant) = key[RUN_PREFIX.len()..].split('/').next() else {
                continue;
            };
            let tenant = TenantId(tenant.to_owned());
            tracing::info!(run = %run.id, module = %run.module, "resuming an upgrade run");
            match self
                .upgrade_ctx(&tenant, &run.module.clone(), (run.plan.from, run.plan.to))
                .await
            {
                Ok(cx) => {
                    let engine = self.clone();
                    self.inner
                        .rt
                        .spawn(async move { engine.drive(cx, run).await });
                }
                Err(e) => {
                    tracing::error!(run = %run.id, error = %e, "cannot resume an upgrade run")
                }
            }
        }
    }

    async fn upgrade_ctx(
        &self,
        tenant: &TenantId,
        name: &str,
        (from, to): (u32, u32),
    ) -> Result<Ctx, UpgradeError> {
        let record = self
            .modules(tenant)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
            .ok_or_else(|| UpgradeError::UnknownModule(name.to_owned()))?;
        let limits = self
            .inner
            .tenants
            .get(tenant)
            .map(|t| t.limits.clone())
            .ok_or_else(|| UpgradeError::UnknownModule(name.to_owned()))?;
        let record = &record;
        let version = |number: u32| async move {
            let v = record
                .versions
                .iter()
                .find(|v| v.version == number)
                .ok_or_else(|| UpgradeError::UnknownVersion {
                    module: name.to_owned(),
                    version: number,
                })?;
            let module = self
                .inner
                .registry
                .compiled(&v.digest, &self.inner.store, &self.inner.executor)
                .await
                .map_err(|e| UpgradeError::Invalid(format!("version {number}: {e}")))?;
            Ok::<_, UpgradeError>(Version {
                number,
                digest: v.digest.clone(),
                module,
            })
        };
        Ok(Ctx {
            tenant: tenant.clone(),
            module: name.to_owned(),
            from: version(from).await?,
            to: version(to).await?,
            limits,
        })
    }

    /// The module's actors on the `from` version that `select` takes, in key order.
    fn selected(&self, cx: &Ctx, select: &Select) -> Result<Vec<ActorId>, Error> {
        let on_from = |meta: &ActorMeta| meta.digest == cx.from.digest;
        if let Select::Keys { keys } = select {
            let mut out = Vec::new();
            for k in keys {
                let actor = ActorId::new(cx.tenant.clone(), &cx.module, k);
                if self
                    .inner
                    .store
                    .actor_meta(&actor)?
                    .is_some_and(|m| on_from(&m))
                {
                    out.push(actor);
                }
            }
            return Ok(out);
        }
        let filter = ActorFilter {
            module: Some(cx.module.clone()),
            version: Some(cx.from.number),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list_actors(&cx.tenant, &filter, 1000, cursor.as_deref())?;
            for (actor, meta) in page.items {
                let taken = match select {
                    Select::Percent { percent } => in_percent(&actor.key, *percent),
                    _ => true,
                };
                if taken && on_from(&meta) {
                    out.push(actor);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    async fn save_run(&self, tenant: &TenantId, run: &UpgradeRun) -> Result<(), Error> {
        if self.inner.tenants.get(tenant).is_none() {
            // Deleted meanwhile: its records are being purged; leave none behind.
            return Err(Error::UnknownTenant(tenant.0.clone()));
        }
        let mut run = run.clone();
        run.updated_ms = self.now_ms();
        self.inner
            .store
            .admin(store::AdminOp::PutMeta {
                key: run_key(&tenant.0, &run.module, &run.id),
                value: run.to_bytes(),
            })
            .await?;
        Ok(())
    }

    fn input<'a>(
        &self,
        cx: &'a Ctx,
        actor: &'a ActorId,
        now_ms: u64,
        state: Option<&'a [u8]>,
        envelope: &'a Envelope,
    ) -> TurnInput<'a> {
        TurnInput {
            actor,
            now_ms,
            state,
            envelope,
            timers: Arc::default(),
            limits: cx.limits.clone(),
        }
    }

    /// `migrate` of the new version on `state` (an absent state stays absent).
    async fn migrate(
        &self,
        cx: &Ctx,
        actor: &ActorId,
        state: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, String> {
        let Some(state) = state else {
            return Ok(None);
        };
        let nothing = envelope(MessageKind::Event, Vec::new());
        let input = self.input(cx, actor, self.now_ms(), None, &nothing);
        match self
            .inner
            .executor
            .migrate(&cx.to.module, input, cx.from.number, state)
            .await
        {
            MigrateExec::Migrated(s) => Ok(Some(s)),
            MigrateExec::Unsupported => Ok(Some(state.to_vec())),
            MigrateExec::Refused(e) => Err(format!("refused: {e}")),
            MigrateExec::Trapped(e) => Err(format!("trapped: {e}")),
        }
    }

    /// Carry an active run on from where its record says.
    async fn drive(self, cx: Ctx, mut run: UpgradeRun) {
        if let Err(e) = self.drive_inner(&cx, &mut run).await {
            tracing::error!(run = %run.id, error = %e, "upgrade run stopped; it resumes at the next start");
        }
    }

    async fn drive_inner(&self, cx: &Ctx, run: &mut UpgradeRun) -> Result<(), Error> {
        loop {
            match run.status {
                RunStatus::Planning => {
                    let selected = self.selected(cx, &run.plan.select)?;
                    self.plan(cx, run, &selected).await?;
                    self.save_run(&cx.tenant, run).await?;
                }
                RunStatus::Applying
                    if run.plan.mode == Mode::Canary && run.watch_since_ms.is_none() =>
                {
                    let all = self.selected(cx, &run.plan.select)?;
                    let share = run.plan.canary.percent;
                    let mut first: Vec<ActorId> = all
                        .iter()
                        .filter(|a| in_percent(&format!("canary/{}", a.key), share))
                        .cloned()
                        .collect();
                    if first.is_empty() && share > 0 {
                        first.extend(all.first().cloned());
                    }
                    self.move_actors(cx, run, &first).await?;
                    run.status = RunStatus::Watching;
                    run.watch_since_ms = Some(self.now_ms());
                    run.report.canary = Some(CanaryReport {
                        moved: run.report.moved,
                        ..Default::default()
                    });
                    self.save_run(&cx.tenant, run).await?;
                }
                RunStatus::Applying => {
                    let rest = self.selected(cx, &run.plan.select)?;
                    self.move_actors(cx, run, &rest).await?;
                    run.status = RunStatus::Completed;
                    self.save_run(&cx.tenant, run).await?;
                }
                RunStatus::Watching => {
                    if self.watch_canary(cx, run).await? {
                        run.status = RunStatus::Applying;
                        if let Some(c) = &mut run.report.canary {
                            c.verdict = "passed".into();
                        }
                    } else {
                        run.status = RunStatus::RollingBack;
                    }
                    self.save_run(&cx.tenant, run).await?;
                }
                RunStatus::RollingBack => self.roll_back(&cx.tenant, run).await?,
                _ => return Ok(()),
            }
        }
    }

    /// Move `actors` (those still on the `from` version) one commit each.
    async fn move_actors(
        &self,
        cx: &Ctx,
        run: &mut UpgradeRun,
        actors: &[ActorId],
    ) -> Result<(), Error> {
        let mut since_save = 0;
        for actor in actors {
            let mut moved = false;
            for _ in 0..MOVE_TRIES {
                let Some(batch) = self.inner.store.pending(actor, 0)? else {
                    break;
                };
                if batch.meta.digest != cx.from.digest {
                    break;
                }
                let state = match self.migrate(cx, actor, batch.state.as_deref()).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%actor, run = %run.id, error = %e, "not moved: migrate failed");
                        break;
                    }
                };
                let op = store::AdminOp::UpgradeActor {
                    actor: actor.clone(),
                    from_digest: cx.from.digest.clone(),
                    head_seq: batch.meta.head_seq,
                    to_version: cx.to.number,
                    to_digest: cx.to.digest.clone(),
                    state,
                    undo_key: undo_key(actor, &run.id),
                };
                if self.inner.store.admin(op).await? {
                    moved = true;
                    // A runner holding the old version's state reads the store again.
                    runner::wake(&self.inner, actor.clone());
                    break;
                }
            }
            if moved {
                run.report.moved += 1;
            } else {
                run.report.skipped += 1;
            }
            since_save += 1;
            if since_save >= SAVE_EVERY {
                since_save = 0;
                self.save_run(&cx.tenant, run).await?;
            }
        }
        Ok(())
    }

    /// The run's moved actors and what they were.
    fn moved(
        &self,
        tenant: &TenantId,
        run: &UpgradeRun,
    ) -> Result<Vec<(ActorId, String, UpgradeUndo)>, Error> {
        let prefix = undo_prefix(&tenant.0, &run.id);
        let mut out = Vec::new();
        for key in self
            .inner
            .store
            .reads()
            .meta_keys(&prefix)
            .map_err(store::Error::from)?
        {
            let Some((module, k)) = key[prefix.len()..].split_once('/') else {
                continue;
            };
            let actor = ActorId::new(tenant.clone(), module, k);
            if let Some(undo) = self
                .inner
                .store
                .meta_value(&key)?
                .and_then(|b| UpgradeUndo::from_bytes(&b))
            {
                out.push((actor, key, undo));
            }
        }
        Ok(out)
    }

    /// Forget every upgrade record of a deleted tenant.
    pub(crate) async fn forget_upgrades(&self, tenant: &str) -> Result<(), Error> {
        for prefix in tenant_prefixes(tenant) {
            for key in self
                .inner
                .store
                .reads()
                .meta_keys(&prefix)
                .map_err(store::Error::from)?
            {
                self.inner
                    .store
                    .admin(store::AdminOp::RemoveMeta { key })
                    .await?;
            }
        }
        Ok(())
    }

    /// Watch a canary's moved actors until each has had its turns or time is up; `true`
    /// if their failures stay within the policy.
    async fn watch_canary(&self, cx: &Ctx, run: &mut UpgradeRun) -> Result<bool, Error> {
        let policy = run.plan.canary.clone();
        let until = run.watch_since_ms.unwrap_or(0) + policy.wait_s * 1000;
        loop {
            let (mut watched, mut failed, mut all_seen) = (0u64, 0u64, true);
            let moved = self.moved(&cx.tenant, run)?;
            for (actor, _, undo) in &moved {
                let page = self.history(actor, policy.turns as usize + 64, None)?;
                let mut since: Vec<_> = page
                    .map(|p| p.items)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(seq, _)| *seq >= undo.head_seq)
                    .collect();
                since.sort_by_key(|(seq, _)| *seq);
                since.truncate(policy.turns as usize);
                all_seen &= since.len() >= policy.turns as usize;
                watched += since.len() as u64;
                failed += since
                    .iter()
                    .filter(|(_, r)| !matches!(r.outcome, Outcome::Ok))
                    .count() as u64;
            }
            let ratio = if watched == 0 {
                0.0
            } else {
                failed as f64 / watched as f64
            };
            let canary = run.report.canary.get_or_insert_with(Default::default);
            canary.moved = moved.len() as u64;
            canary.watched_turns = watched;
            canary.failed_turns = failed;
            if ratio > policy.max_failure_ratio && (all_seen || self.now_ms() >= until) {
                let why = format!(
                    "canary: {failed} of {watched} watched turns failed (over {})",
                    policy.max_failure_ratio
                );
                canary.verdict = format!("rolled back: {why}");
                run.reason = Some(why);
                return Ok(false);
            }
            if all_seen || self.now_ms() >= until {
                return Ok(true);
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }

    async fn roll_back(&self, tenant: &TenantId, run: &mut UpgradeRun) -> Result<(), Error> {
        for (actor, key, _) in self.moved(tenant, run)? {
            let op = store::AdminOp::RollbackActor {
                actor: actor.clone(),
                undo_key: key,
            };
            if self.inner.store.admin(op).await? {
                run.report.rolled_back += 1;
                runner::wake(&self.inner, actor);
            } else {
                run.report.kept += 1;
            }
        }
        run.status = RunStatus::RolledBack;
        self.save_run(tenant, run).await
    }
}

fn envelope(kind: MessageKind, body: Vec<u8>) -> Envelope {
    Envelope {
        kind,
        body,
        enqueued_ms: 0,
        trace: None,
    }
}

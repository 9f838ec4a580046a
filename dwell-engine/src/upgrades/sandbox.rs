//! What a version would do, nothing performed: the dry run of an upgrade (each selected
//! actor's state migrated, its recent recorded turns replayed on the new version and
//! compared with what the old one did) and the dead-letter hotfix (one dead-lettered
//! message run on another version, dry or for real).

use dwell_types::history::{EffectNote, Outcome, TurnRecord};
use dwell_types::upgrade::{ActorReport, Report, TurnReport, undo_key};

use super::{Ctx, UpgradeError, envelope};
use crate::domain::{ActorId, MessageKind, RequestId};
use crate::executor::TurnExec;
use crate::visibility::Known;
use crate::{Engine, Error, runner, store};

/// A dead letter run on another version ([`Engine::hotfix_dead_letter`]).
#[derive(Debug, Clone, Default)]
pub struct Hotfix {
    /// `migrated`, `unchanged`, `not needed` (already on that version) or `failed: …`.
    pub migrate: String,
    /// `ok`, `refused: …` or `trapped: …` (empty when migrate failed).
    pub outcome: String,
    /// The state after the turn, when it went through.
    pub state: Option<Vec<u8>>,
    pub effects: Vec<EffectNote>,
    /// Applied: the message is back in the mailbox (`Some(id)` of the new request, for a
    /// request).
    pub retried: Option<Option<RequestId>>,
}

impl Engine {
    /// A dead letter's message run again on version `version` of its actor's module
    /// (the actor's state migrated to it): dry (`apply == false`: nothing performed,
    /// the outcome shown) or for real (the actor moves to that version, then the message
    /// goes back into its mailbox). `None` if the actor has no such dead letter.
    pub async fn hotfix_dead_letter(
        &self,
        actor: &ActorId,
        seq: u64,
        version: u32,
        apply: bool,
    ) -> Result<Option<Hotfix>, UpgradeError> {
        let Some(batch) = self.inner.store.pending(actor, 0)? else {
            return Ok(None);
        };
        let Some(dead) = self
            .inner
            .store
            .actor_view(actor, usize::MAX)?
            .and_then(|v| v.dead_letters.into_iter().find(|(s, _)| *s == seq))
            .map(|(_, d)| d)
        else {
            return Ok(None);
        };
        let cx = self
            .upgrade_ctx(&actor.tenant, &actor.module, (batch.meta.version, version))
            .await?;
        let moves = batch.meta.version != version;
        let state = if moves {
            match self.migrate(&cx, actor, batch.state.as_deref()).await {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Some(Hotfix {
                        migrate: format!("failed: {e}"),
                        ..Hotfix::default()
                    }));
                }
            }
        } else {
            batch.state.clone()
        };
        let mut fix = Hotfix {
            migrate: if !moves {
                "not needed".into()
            } else if state == batch.state {
                "unchanged".into()
            } else {
                "migrated".into()
            },
            ..Hotfix::default()
        };
        let input = self.input(&cx, actor, self.now_ms(), state.as_deref(), &dead.envelope);
        match self
            .inner
            .executor
            .run_turn(&cx.to.module, &mut None, input)
            .await
        {
            TurnExec::Done { state, effects } => {
                fix.outcome = "ok".into();
                fix.state = Some(state);
                fix.effects = effects.iter().filter_map(EffectNote::of).collect();
            }
            TurnExec::Refused(e, _) => fix.outcome = format!("refused: {e}"),
            TurnExec::Trapped(e) => fix.outcome = format!("trapped: {e}"),
        }
        if !apply {
            return Ok(Some(fix));
        }
        if moves {
            let op = store::AdminOp::UpgradeActor {
                actor: actor.clone(),
                from_digest: cx.from.digest.clone(),
                head_seq: batch.meta.head_seq,
                to_version: cx.to.number,
                to_digest: cx.to.digest.clone(),
                state,
                undo_key: undo_key(actor, &format!("hotfix-{seq}")),
            };
            if !self.inner.store.admin(op).await? {
                return Err(UpgradeError::Invalid(
                    "the actor took a turn meanwhile; look at the dry run again".into(),
                ));
            }
            runner::wake(&self.inner, actor.clone());
        }
        fix.retried = Some(self.retry_dead_letter(actor, seq).await?.flatten());
        Ok(Some(fix))
    }

    pub(super) async fn dry_run(
        &self,
        cx: &Ctx,
        actors: &[ActorId],
        replay: u32,
    ) -> Result<Report, Error> {
        let mut report = Report {
            selected: actors.len() as u64,
            ..Default::default()
        };
        let mut found = Vec::new();
        for actor in actors {
            let Some(batch) = self.inner.store.pending(actor, 0)? else {
                continue;
            };
            let mut a = ActorReport {
                key: actor.key.clone(),
                migrate: String::new(),
                problem: None,
                turns: Vec::new(),
            };
            match self.migrate(cx, actor, batch.state.as_deref()).await {
                Ok(new) if new == batch.state => a.migrate = "unchanged".into(),
                Ok(_) => a.migrate = "migrated".into(),
                Err(e) => {
                    report.migrate_failed += 1;
                    a.problem = Some(format!("migrate {e}"));
                    a.migrate = format!("failed: {e}");
                }
            }
            let (mut trapped, mut refused, mut state_differs, mut effects_differ) =
                (false, false, false, false);
            let page = self.history(actor, replay as usize, None)?;
            for (seq, record) in page.map(|p| p.items).unwrap_or_default().into_iter().rev() {
                let t = self.replay(cx, actor, seq, &record).await?;
                if t.now.starts_with("not replayed") {
                    report.not_replayed_turns += 1;
                } else {
                    report.replayed_turns += 1;
                }
                if t.now.starts_with("trapped") && !trapped {
                    trapped = true;
                    a.problem
                        .get_or_insert(format!("turn {seq} ({}) {}", t.message, t.now));
                }
                if t.now.starts_with("refused") && t.was == "ok" && !refused {
                    refused = true;
                    a.problem
                        .get_or_insert(format!("turn {seq} ({}) {}", t.message, t.now));
                }
                state_differs |= t.state_same == Some(false);
                effects_differ |= t.effects_same == Some(false);
                a.turns.push(t);
            }
            report.would_trap += u64::from(trapped);
            report.would_refuse += u64::from(refused);
            report.state_differs += u64::from(state_differs);
            report.effects_differ += u64::from(effects_differ);
            report.problems += u64::from(a.problem.is_some());
            found.push(a);
        }
        // Problems first, then by key; bounded.
        found.sort_by(|a, b| {
            b.problem
                .is_some()
                .cmp(&a.problem.is_some())
                .then(a.key.cmp(&b.key))
        });
        found.truncate(Report::MAX_ACTORS);
        report.actors = found;
        Ok(report)
    }

    /// Turn `seq` of `actor` replayed on the new version.
    async fn replay(
        &self,
        cx: &Ctx,
        actor: &ActorId,
        seq: u64,
        record: &TurnRecord,
    ) -> Result<TurnReport, Error> {
        let note = &record.message;
        let mut t = TurnReport {
            seq,
            message: match &note.label {
                Some(l) => format!("{} {l}", note.kind),
                None => note.kind.clone(),
            },
            was: match record.outcome {
                Outcome::Ok => "ok",
                Outcome::Refused { .. } => "refused",
                Outcome::DeadLetter { .. } => "dead_letter",
            }
            .into(),
            now: String::new(),
            state_same: None,
            effects_same: None,
        };
        let kind = match (note.kind.as_str(), &note.label, &note.from) {
            ("call", _, Some(from)) => {
                RequestId::parse(from).map(|request| MessageKind::Request { request })
            }
            ("event", _, _) => Some(MessageKind::Event),
            ("timer", Some(name), _) => Some(MessageKind::Timer { name: name.clone() }),
            _ => None,
        };
        let Some(kind) = kind else {
            t.now = format!(
                "not replayed: the history does not keep what a {} carries",
                note.kind
            );
            return Ok(t);
        };
        if !note.complete() {
            t.now = "not replayed: the history keeps only the start of its body".into();
            return Ok(t);
        }
        let Some(entry) = self.history_entry(actor, seq)? else {
            t.now = "not replayed: the record is gone".into();
            return Ok(t);
        };
        let Known::State(before) = entry.previous else {
            t.now = "not replayed: the state before it is not kept".into();
            return Ok(t);
        };
        let before = match self.migrate(cx, actor, before.as_deref()).await {
            Ok(s) => s,
            Err(e) => {
                t.now = format!("not replayed: migrate {e}");
                return Ok(t);
            }
        };
        let message = envelope(kind, note.body.clone());
        let input = self.input(cx, actor, record.at_ms, before.as_deref(), &message);
        match self
            .inner
            .executor
            .run_turn(&cx.to.module, &mut None, input)
            .await
        {
            TurnExec::Done { state, effects } => {
                t.now = "ok".into();
                let notes: Vec<EffectNote> = effects.iter().filter_map(EffectNote::of).collect();
                t.effects_same = Some(notes == record.effects);
                if let Known::State(after) = entry.state {
                    let expected = self
                        .migrate(cx, actor, after.as_deref())
                        .await
                        .ok()
                        .flatten();
                    t.state_same = expected.map(|e| e == state);
                }
            }
            TurnExec::Refused(e, _) => t.now = format!("refused: {e}"),
            TurnExec::Trapped(e) => t.now = format!("trapped: {e}"),
        }
        Ok(t)
    }
}

//! Live upgrades: what an upgrade run is asked ([`UpgradePlan`]), what it found and did
//! ([`UpgradeRun`] and its [`Report`]), and what a moved actor keeps for a rollback
//! ([`UpgradeUndo`]). The engine drives runs; the turn core switches one actor at a
//! time, each in its own commit. Both records live in the store's `meta` table, under
//! [`run_key`] and [`undo_key`], encoded here.

use serde::{Deserialize, Serialize};

use crate::{ActorId, UnixMs};

/// `upgrade/<tenant>/<module>/<id>` → [`UpgradeRun`].
pub const RUN_PREFIX: &str = "upgrade/";
/// `upgrade-undo/<tenant>/<run id>/<module>/<key>` → [`UpgradeUndo`].
pub const UNDO_PREFIX: &str = "upgrade-undo/";

pub fn run_key(tenant: &str, module: &str, id: &str) -> String {
    format!("{RUN_PREFIX}{tenant}/{module}/{id}")
}

/// Where `actor`'s undo record of run `run` is kept.
pub fn undo_key(actor: &ActorId, run: &str) -> String {
    format!(
        "{}{}/{}",
        undo_prefix(&actor.tenant.0, run),
        actor.module,
        actor.key
    )
}

/// The undo records of run `run` of `tenant` start with this.
pub fn undo_prefix(tenant: &str, run: &str) -> String {
    format!("{UNDO_PREFIX}{tenant}/{run}/")
}

/// Every upgrade record of `tenant` (runs and undo records) starts with one of these.
pub fn tenant_prefixes(tenant: &str) -> [String; 2] {
    [
        format!("{RUN_PREFIX}{tenant}/"),
        format!("{UNDO_PREFIX}{tenant}/"),
    ]
}

/// How far a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Replay recorded turns on the new version and report; move nothing.
    DryRun,
    /// Move every selected actor.
    Apply,
    /// Move a share first, watch their next turns, then move the rest or roll back.
    Canary,
}

/// `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum All {
    All,
}

/// Which actors on the `from` version a run takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Select {
    All(All),
    Keys {
        keys: Vec<String>,
    },
    /// A stable share of them (by a hash of the key): the same actors every time.
    Percent {
        percent: u8,
    },
}

/// When a canary rolls back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryPolicy {
    /// Share of the selected actors moved first.
    #[serde(default = "CanaryPolicy::default_percent")]
    pub percent: u8,
    /// The moved actors' turns watched, each.
    #[serde(default = "CanaryPolicy::default_turns")]
    pub turns: u32,
    /// Failed turns (refused or dead-lettered) over watched turns above this: roll back.
    #[serde(default = "CanaryPolicy::default_ratio")]
    pub max_failure_ratio: f64,
    /// Watch at most this long, then decide on what was seen.
    #[serde(default = "CanaryPolicy::default_wait")]
    pub wait_s: u64,
}

impl CanaryPolicy {
    fn default_percent() -> u8 {
        10
    }
    fn default_turns() -> u32 {
        3
    }
    fn default_ratio() -> f64 {
        0.2
    }
    fn default_wait() -> u64 {
        300
    }
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        CanaryPolicy {
            percent: Self::default_percent(),
            turns: Self::default_turns(),
            max_failure_ratio: Self::default_ratio(),
            wait_s: Self::default_wait(),
        }
    }
}

/// What `POST /v1/modules/{name}/upgrades` asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradePlan {
    pub from: u32,
    pub to: u32,
    pub select: Select,
    pub mode: Mode,
    /// Apply although the dry run found problems.
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub canary: CanaryPolicy,
    /// Recorded turns replayed per actor (most recent first), at most.
    #[serde(default = "UpgradePlan::default_replay")]
    pub replay_turns: u32,
}

impl UpgradePlan {
    fn default_replay() -> u32 {
        10
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The dry run of many actors, going on in the background.
    Planning,
    /// A dry run, done: nothing moved.
    Planned,
    /// The dry run found problems and the plan was not forced: nothing moved.
    Refused,
    /// Moving actors (resumed after a restart).
    Applying,
    /// A canary's actors moved; watching their turns.
    Watching,
    /// Rolling moved actors back.
    RollingBack,
    Completed,
    RolledBack,
}

impl RunStatus {
    /// Whether the run still has work (and is resumed after a restart).
    pub fn active(self) -> bool {
        matches!(
            self,
            RunStatus::Planning
                | RunStatus::Applying
                | RunStatus::Watching
                | RunStatus::RollingBack
        )
    }
}

/// One upgrade run, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeRun {
    pub id: String,
    pub module: String,
    pub plan: UpgradePlan,
    pub status: RunStatus,
    /// Why it was refused or rolled back.
    pub reason: Option<String>,
    pub created_ms: UnixMs,
    pub updated_ms: UnixMs,
    /// When a canary's actors had moved.
    pub watch_since_ms: Option<UnixMs>,
    pub report: Report,
}

impl UpgradeRun {
    pub fn to_bytes(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("an upgrade run encodes")
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        rmp_serde::from_slice(b).ok()
    }
}

/// What the dry run found and what the run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Actors on the `from` version that the selection took.
    pub selected: u64,
    pub replayed_turns: u64,
    /// Recorded turns that could not be replayed (no state before them kept, the body
    /// cut, or a kind that carries what the record does not keep).
    pub not_replayed_turns: u64,
    /// Actors whose state `migrate` refused or trapped on.
    pub migrate_failed: u64,
    /// Actors with a replayed turn that traps on the new version.
    pub would_trap: u64,
    /// Actors with a replayed turn that the old version took and the new one refuses.
    pub would_refuse: u64,
    /// Actors whose replayed states differ from the recorded ones.
    pub state_differs: u64,
    /// Actors whose replayed turns' effects differ from the recorded ones.
    pub effects_differ: u64,
    /// Actors with a problem: migrate failed, a turn would trap or newly refuse.
    pub problems: u64,
    /// Per actor, those with problems first; at most [`Report::MAX_ACTORS`].
    pub actors: Vec<ActorReport>,
    pub moved: u64,
    /// Selected actors not moved: no longer on `from`, or migrate failed when applying.
    pub skipped: u64,
    pub rolled_back: u64,
    /// Moved actors a rollback left on the new version: turns changed their state since.
    pub kept: u64,
    pub canary: Option<CanaryReport>,
}

impl Report {
    pub const MAX_ACTORS: usize = 200;
}

/// One actor in a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorReport {
    pub key: String,
    /// `migrated`, `unchanged` (no `migrate`: the bytes move as they are) or
    /// `failed: <reason>`.
    pub migrate: String,
    /// The problem, if any, in words.
    pub problem: Option<String>,
    pub turns: Vec<TurnReport>,
}

/// One recorded turn replayed on the new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnReport {
    pub seq: u64,
    /// The message, as the history names it (`call register`, `timer open`…).
    pub message: String,
    /// What the old version did: `ok`, `refused`, `dead_letter`.
    pub was: String,
    /// What the new one does: `ok`, `refused: …`, `trapped: …`, `not replayed: …`.
    pub now: String,
    /// Whether the state after it equals the recorded one (when both are known).
    pub state_same: Option<bool>,
    /// Whether its effects match the recorded ones.
    pub effects_same: Option<bool>,
}

/// A canary's watch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    pub moved: u64,
    pub watched_turns: u64,
    pub failed_turns: u64,
    /// `rolled back: …`, `passed` or empty while watching.
    pub verdict: String,
}

/// What an actor was before a run moved it, for a rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeUndo {
    pub version: u32,
    pub digest: String,
    pub state: Option<Vec<u8>>,
    pub to_version: u32,
    pub to_digest: String,
    /// The actor's successful turns and mailbox head right after the move: a rollback
    /// restores the old state only if no turn has changed the new one since.
    pub turns: u64,
    pub head_seq: u64,
    pub at_ms: UnixMs,
}

impl UpgradeUndo {
    pub fn to_bytes(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("an undo record encodes")
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        rmp_serde::from_slice(b).ok()
    }
}

/// Whether `key` falls in the first `percent` of 100 buckets (by [`stable_hash`]: the
/// same actors every time, on every machine).
///
/// [`stable_hash`]: crate::stable_hash
pub fn in_percent(key: &str, percent: u8) -> bool {
    crate::stable_hash(key.as_bytes()) % 100 < u64::from(percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_as_the_api_writes_it() {
        let p: UpgradePlan =
            serde_json::from_str(r#"{"from": 1, "to": 2, "select": "all", "mode": "dry-run"}"#)
                .unwrap();
        assert_eq!(p.select, Select::All(All::All));
        assert_eq!((p.mode, p.force, p.replay_turns), (Mode::DryRun, false, 10));
        let p: UpgradePlan = serde_json::from_str(
            r#"{"from": 1, "to": 2, "select": {"keys": ["a"]}, "mode": "apply", "force": true}"#,
        )
        .unwrap();
        assert_eq!(
            p.select,
            Select::Keys {
                keys: vec!["a".into()]
            }
        );
        let p: UpgradePlan = serde_json::from_str(
            r#"{"from": 1, "to": 2, "select": {"percent": 10}, "mode": "canary", "canary": {"turns": 1}}"#,
        )
        .unwrap();
        assert_eq!(p.select, Select::Percent { percent: 10 });
        assert_eq!((p.canary.turns, p.canary.percent), (1, 10));
        assert!(
            serde_json::from_str::<UpgradePlan>(
                r#"{"from": 1, "to": 2, "select": "some", "mode": "apply"}"#
            )
            .is_err()
        );
        let run = UpgradeRun {
            id: "u1".into(),
            module: "m".into(),
            plan: p,
            status: RunStatus::Watching,
            reason: None,
            created_ms: 1,
            updated_ms: 2,
            watch_since_ms: Some(2),
            report: Report::default(),
        };
        assert_eq!(UpgradeRun::from_bytes(&run.to_bytes()), Some(run));
    }

    #[test]
    fn a_percent_takes_a_stable_share() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let ten = keys.iter().filter(|k| in_percent(k, 10)).count();
        assert!((800..1200).contains(&ten), "{ten}");
        assert!(keys.iter().all(|k| in_percent(k, 100)));
        assert!(!keys.iter().any(|k| in_percent(k, 0)));
        assert!(
            keys.iter()
                .filter(|k| in_percent(k, 10))
                .all(|k| in_percent(k, 50))
        );
    }
}

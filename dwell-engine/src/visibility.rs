//! What operators see of many processes: lists of actors and requests, an actor's turn
//! history with the state as of a turn, and the process map mined from the history of
//! a module's actors. Reads only (committed data, one snapshot per storage read); every
//! lookup is scoped to one tenant, so another tenant's data is simply not found.
//!
//! Lists are pages over the key order of their table: a page reads at most a bounded
//! number of rows whatever its filters, so a filter that matches little answers a short
//! (even empty) page with a cursor to go on from, never a long scan.

use dwell_storage::Reads;
use dwell_types::history::{MapMiner, ProcessMap, StateMark, TurnRecord};

use crate::domain::records::{ActorMeta, RequestRecord};
use crate::domain::{ActorId, ActorStatus, RequestId, TenantId};
use crate::{Engine, Error};

/// Rows one page of a filtered list reads at most, per item asked for.
const SCAN_PER_ITEM: usize = 20;
/// Rows one page reads at least (a small page may still look far for matches).
const SCAN_MIN: usize = 2_000;
/// The process map reads the history of at most this many actors of the module.
pub const MAP_ACTORS: usize = 5_000;
/// How far back the state as of a turn is looked for through turns that left it as
/// it was.
const STATE_WALK: usize = 256;

/// One page of a list and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// A page of an actor's turn records (newest first) and the cursor of the next.
pub type HistoryPage = Page<(u64, TurnRecord), u64>;

/// Which actors a list shows; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct ActorFilter {
    pub module: Option<String>,
    pub status: Option<ActorStatus>,
    pub version: Option<u32>,
    pub step: Option<String>,
    pub updated_after: Option<u64>,
}

impl ActorFilter {
    fn matches(&self, meta: &ActorMeta) -> bool {
        self.status.is_none_or(|s| s == meta.status)
            && self.version.is_none_or(|v| v == meta.version)
            && self
                .step
                .as_ref()
                .is_none_or(|s| meta.step.as_ref() == Some(s))
            && self.updated_after.is_none_or(|t| meta.updated_ms > t)
    }
}

/// A turn record and the states around it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub seq: u64,
    pub record: TurnRecord,
    /// The state as of this turn (`Known(None)`: the actor had none).
    pub state: Known,
    /// The state before this turn.
    pub previous: Known,
}

/// A state the history can or cannot tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    State(Option<Vec<u8>>),
    /// Not kept (fallen out of retention, too large, or in the middle of a batch).
    Unknown,
}

impl Engine {
    fn reads(&self) -> &dyn Reads {
        self.inner.store.reads()
    }

    /// A page of `tenant`'s actors in key order (`module/key`), from after `cursor`.
    pub fn list_actors(
        &self,
        tenant: &TenantId,
        filter: &ActorFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(ActorId, ActorMeta), String>, Error> {
        let prefix = match &filter.module {
            Some(m) => format!("{}/{m}/", tenant.0),
            None => format!("{}/", tenant.0),
        };
        let after = cursor.map(|c| format!("{}/{c}", tenant.0));
        let page = scan(
            limit,
            after,
            |last: Option<&String>, n| self.reads().actors(&prefix, last.map(String::as_str), n),
            |key, meta| {
                filter
                    .matches(&meta)
                    .then(|| ActorId::from_storage_key(key).map(|a| (a, meta)))
                    .flatten()
            },
        )?;
        Ok(Page {
            items: page.items,
            next: page.next.map(|k| cursor_of(&k, tenant)),
        })
    }

    /// A page of `tenant`'s requests in id order, from after `cursor`, whose status is
    /// `status` (`pending`, `completed`, `failed`) if given.
    pub fn list_requests(
        &self,
        tenant: &TenantId,
        status: Option<&str>,
        limit: usize,
        cursor: Option<RequestId>,
    ) -> Result<Page<(RequestId, RequestRecord), RequestId>, Error> {
        let page = scan(
            limit,
            cursor.map(|c| c.0),
            |last: Option<&u128>, n| self.reads().requests(last.copied(), n),
            |id, rec| {
                (&rec.actor.tenant == tenant && status.is_none_or(|s| s == rec.status.name()))
                    .then_some((RequestId(*id), rec))
            },
        )?;
        Ok(Page {
            items: page.items,
            next: page.next.map(RequestId),
        })
    }

    /// A page of an actor's turn records, newest first, from before `cursor`; `None` if
    /// the actor does not exist. Only records within its tenant's retention show.
    pub fn history(
        &self,
        actor: &ActorId,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Option<HistoryPage>, Error> {
        let key = actor.storage_key();
        let Some(meta) = self.inner.store.actor_meta(actor)? else {
            return Ok(None);
        };
        let keep = self.quotas(&actor.tenant)?.retention(0);
        let oldest = meta.head_seq.saturating_sub(keep.turns);
        let now = self.now_ms();
        let rows = self
            .reads()
            .history(&key, cursor, limit)
            .map_err(crate::store::Error::from)?;
        let full = rows.len() >= limit;
        let mut items: Vec<(u64, TurnRecord)> = Vec::with_capacity(rows.len());
        let mut ended = false;
        for (seq, rec) in rows {
            if seq < oldest || !keep.fresh(rec.at_ms, now) {
                ended = true;
                break;
            }
            items.push((seq, rec));
        }
        let next = match items.last() {
            Some((seq, _)) if full && !ended && *seq > oldest => Some(*seq),
            _ => None,
        };
        Ok(Some(Page { items, next }))
    }

    /// Turn `seq` of an actor with the state as of it and before it; `None` if the actor
    /// or the record does not exist.
    pub fn history_entry(&self, actor: &ActorId, seq: u64) -> Result<Option<HistoryEntry>, Error> {
        let Some(page) = self.history(actor, 1, seq.checked_add(1))? else {
            return Ok(None);
        };
        let Some((found, record)) = page.items.into_iter().next() else {
            return Ok(None);
        };
        if found != seq {
            return Ok(None);
        }
        let key = actor.storage_key();
        // The records from this one back, to walk through turns that kept the state.
        let back = self
            .reads()
            .history(&key, Some(seq + 1), STATE_WALK)
            .map_err(crate::store::Error::from)?;
        let state = self.state_as_of(&key, seq, &back)?;
        let previous = match seq.checked_sub(1) {
            None => Known::State(None),
            Some(before) => self.state_as_of(&key, before, back.get(1..).unwrap_or_default())?,
        };
        Ok(Some(HistoryEntry {
            seq,
            record,
            state,
            previous,
        }))
    }

    /// The state as of turn `seq`, from `records` (newest first, from `seq` back): a
    /// missing record (out of retention) leaves it unknown.
    fn state_as_of(
        &self,
        key: &str,
        seq: u64,
        records: &[(u64, TurnRecord)],
    ) -> Result<Known, Error> {
        let mut expect = Some(seq);
        for (seq, rec) in records {
            if Some(*seq) != expect {
                return Ok(Known::Unknown);
            }
            match rec.state {
                StateMark::Kept => {
                    let state = self
                        .reads()
                        .history_state(key, *seq)
                        .map_err(crate::store::Error::from)?;
                    return Ok(state.map_or(Known::Unknown, |s| Known::State(Some(s))));
                }
                StateMark::NotKept => return Ok(Known::Unknown),
                StateMark::Unchanged if *seq == 0 => return Ok(Known::State(None)),
                StateMark::Unchanged => expect = Some(seq - 1),
            }
        }
        Ok(Known::Unknown)
    }

    /// The process map of one of `tenant`'s modules, mined from the history of (at most
    /// [`MAP_ACTORS` of) its actors; `None` if there is no such module.
    pub fn process_map(
        &self,
        tenant: &TenantId,
        module: &str,
    ) -> Result<Option<ProcessMap>, Error> {
        if !self.module_exists(tenant, module) {
            return Ok(None);
        }
        let keep = self.quotas(tenant)?.retention(0);
        let now = self.now_ms();
        let prefix = format!("{}/{module}/", tenant.0);
        let mut miner = MapMiner::default();
        let mut after: Option<String> = None;
        let mut seen = 0;
        loop {
            let rows = self
                .reads()
                .actors(&prefix, after.as_deref(), 256)
                .map_err(crate::store::Error::from)?;
            let exhausted = rows.len() < 256;
            for (key, meta) in rows {
                if seen >= MAP_ACTORS {
                    return Ok(Some(miner.finish(true)));
                }
                seen += 1;
                let mut records = self
                    .reads()
                    .history(&key, None, keep.turns as usize)
                    .map_err(crate::store::Error::from)?;
                records.retain(|(_, r)| keep.fresh(r.at_ms, now));
                records.reverse();
                let waiting = (meta.status == ActorStatus::Active)
                    .then_some(meta.step.as_deref())
                    .flatten();
                miner.actor(
                    records.iter().map(|(_, r)| (r.at_ms, r.step.as_deref())),
                    waiting,
                );
                after = Some(key);
            }
            if exhausted {
                return Ok(Some(miner.finish(false)));
            }
        }
    }
}

/// One page of a list kept in key order: rows fetched `fetch(after, n)` at a time from
/// after `after`, those `keep` turns into items collected until `limit` of them, reading
/// at most [`SCAN_PER_ITEM`] × `limit` (at least [`SCAN_MIN`]) rows. The next page starts
/// after the last row read; `None` once the table is exhausted.
fn scan<K: Clone, R, T>(
    limit: usize,
    after: Option<K>,
    mut fetch: impl FnMut(Option<&K>, usize) -> Result<Vec<(K, R)>, dwell_storage::Error>,
    mut keep: impl FnMut(&K, R) -> Option<T>,
) -> Result<Page<T, K>, Error> {
    let budget = limit.saturating_mul(SCAN_PER_ITEM).max(SCAN_MIN);
    let mut items = Vec::new();
    let mut last = after;
    let mut scanned = 0;
    loop {
        let chunk = (budget - scanned).min(512);
        let rows = fetch(last.as_ref(), chunk).map_err(crate::store::Error::from)?;
        let exhausted = rows.len() < chunk;
        for (key, row) in rows {
            scanned += 1;
            let item = keep(&key, row);
            last = Some(key);
            if let Some(item) = item {
                items.push(item);
                if items.len() >= limit {
                    return Ok(Page { items, next: last });
                }
            }
        }
        if exhausted {
            return Ok(Page { items, next: None });
        }
        if scanned >= budget {
            return Ok(Page { items, next: last });
        }
    }
}

/// A list cursor: the actor's key below its tenant (`module/key`).
fn cursor_of(storage_key: &str, tenant: &TenantId) -> String {
    storage_key
        .strip_prefix(&format!("{}/", tenant.0))
        .unwrap_or(storage_key)
        .to_owned()
}

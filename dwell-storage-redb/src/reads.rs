//! The read side of the contract ([`dwell_storage::Reads`]) on redb: each call is one
//! read transaction on the caller's thread (redb readers never wait for the writer).

use std::sync::Arc;

use dwell_storage::{Pending, Reads, TimerKey, View};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::records::{
    self, ActorMeta, KeyRecord, ModuleRecord, OutboxEntry, RequestRecord, TenantRecord,
};
use crate::schema::*;
use crate::{Cell, Error, history, large};
use dwell_types::UnixMs;
use dwell_types::history::TurnRecord;

type R<T> = Result<T, dwell_storage::Error>;

/// Timer names are `[A-Za-z0-9_.:-]`, all below this byte: the end of an actor's range.
const NAME_END: &str = "\u{7f}";

#[derive(Clone)]
pub struct RedbReads {
    pub(crate) db: Arc<Cell>,
}

impl RedbReads {
    /// Entries in the tables of large states: (actors pointing at slices, slices,
    /// staged). For tests of the slicing.
    #[doc(hidden)]
    pub fn large_entries(&self) -> (usize, usize, usize) {
        let counts = || -> Result<_, Error> {
            let txn = self.db.get()?.begin_read()?;
            let n = |len: u64| len as usize;
            Ok((
                n(txn.open_table(large::STATE_REFS)?.len()?),
                n(txn.open_table(large::STATE_SLICES)?.len()?),
                n(txn.open_table(large::STAGED)?.len()?),
            ))
        };
        counts().expect("read the tables of large states")
    }

    /// Entries in the history logs: (turn records, states). For tests of the sweep.
    #[doc(hidden)]
    pub fn history_log_len(&self) -> (u64, u64) {
        let counts = || -> Result<_, Error> {
            let txn = self.db.get()?.begin_read()?;
            Ok((
                txn.open_table(history::TURN_LOG)?.len()?,
                txn.open_table(history::STATE_LOG)?.len()?,
            ))
        };
        counts().expect("read the history logs")
    }

    /// `f` in one read transaction of the current file.
    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, Error>) -> R<T> {
        let run = || {
            let txn = self.db.get()?.begin_read()?;
            f(&txn)
        };
        run().map_err(Into::into)
    }

    /// Every record of a `name → record` table.
    fn all<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
    ) -> R<Vec<(String, T)>> {
        self.read(|txn| {
            let t = txn.open_table(table)?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_owned(), records::decode(v.value())?));
            }
            Ok(out)
        })
    }
}

fn meta_of(txn: &ReadTransaction, key: &str) -> Result<Option<ActorMeta>, Error> {
    let actors = txn.open_table(ACTORS)?;
    match actors.get(key)? {
        Some(v) => Ok(Some(records::decode(v.value())?)),
        None => Ok(None),
    }
}

impl Reads for RedbReads {
    fn room(&self) -> R<()> {
        self.db.room()
    }

    fn actor(&self, key: &str) -> R<Option<ActorMeta>> {
        self.read(|txn| meta_of(txn, key))
    }

    fn pending(&self, key: &str, max: usize) -> R<Option<Pending>> {
        self.read(|txn| {
            let Some(meta) = meta_of(txn, key)? else {
                return Ok(None);
            };
            let state = large::read_state(txn, key)?;
            let mailbox = txn.open_table(MAILBOX)?;
            let mut messages = Vec::new();
            for entry in mailbox.range((key, meta.head_seq)..(key, u64::MAX))? {
                let (k, v) = entry?;
                messages.push((k.value().1, records::decode(v.value())?));
                if messages.len() >= max {
                    break;
                }
            }
            let mut timers = Vec::new();
            if meta.timers > 0 {
                let index = txn.open_table(TIMER_INDEX)?;
                for entry in index.range((key, "")..(key, NAME_END))? {
                    timers.push(entry?.0.value().1.to_owned());
                }
            }
            Ok(Some(Pending {
                meta,
                state,
                messages,
                timers,
            }))
        })
    }

    fn view(&self, key: &str, dead_max: usize) -> R<Option<View>> {
        self.read(|txn| {
            let Some(meta) = meta_of(txn, key)? else {
                return Ok(None);
            };
            let state = large::read_state(txn, key)?;
            let dead = txn.open_table(DEAD)?;
            let mut dead_letters = Vec::new();
            for entry in dead.range((key, 0)..(key, u64::MAX))? {
                let (k, v) = entry?;
                dead_letters.push((k.value().1, records::decode(v.value())?));
                if dead_letters.len() >= dead_max {
                    break;
                }
            }
            let mailbox = txn.open_table(MAILBOX)?;
            let mut mailbox_depth = 0;
            for entry in mailbox.range((key, 0)..=(key, u64::MAX))? {
                entry?;
                mailbox_depth += 1;
            }
            Ok(Some(View {
                meta,
                mailbox_depth,
                state,
                dead_letters,
            }))
        })
    }

    fn requests(&self, after: Option<u128>, max: usize) -> R<Vec<(u128, RequestRecord)>> {
        self.read(|txn| {
            let t = txn.open_table(REQUESTS)?;
            let mut out = Vec::new();
            let range = match after {
                Some(a) if a == u128::MAX => return Ok(out),
                Some(a) => t.range(a + 1..)?,
                None => t.range(0..)?,
            };
            for entry in range {
                if out.len() >= max {
                    break;
                }
                let (k, v) = entry?;
                out.push((k.value(), records::decode(v.value())?));
            }
            Ok(out)
        })
    }

    fn actors(&self, prefix: &str, after: Option<&str>, max: usize) -> R<Vec<(String, ActorMeta)>> {
        self.read(|txn| {
            let t = txn.open_table(ACTORS)?;
            let mut out = Vec::new();
            let start = after.filter(|a| *a > prefix).unwrap_or(prefix);
            for entry in t.range(start..)? {
                let (k, v) = entry?;
                let key = k.value();
                if !key.starts_with(prefix) || out.len() >= max {
                    break;
                }
                if Some(key) == after {
                    continue;
                }
                out.push((key.to_owned(), records::decode(v.value())?));
            }
            Ok(out)
        })
    }

    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>> {
        self.read(|txn| match meta_of(txn, key)? {
            Some(meta) => {
                history::records_of(&txn.open_table(history::TURN_LOG)?, &meta, before, max)
            }
            None => Ok(Vec::new()),
        })
    }

    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>> {
        self.read(|txn| match meta_of(txn, key)? {
            Some(meta) => history::state_of(&txn.open_table(history::STATE_LOG)?, &meta, seq),
            None => Ok(None),
        })
    }

    fn request(&self, id: u128) -> R<Option<RequestRecord>> {
        self.read(|txn| {
            let t = txn.open_table(REQUESTS)?;
            match t.get(id)? {
                Some(v) => Ok(Some(records::decode(v.value())?)),
                None => Ok(None),
            }
        })
    }

    fn modules(&self, prefix: &str) -> R<Vec<(String, ModuleRecord)>> {
        self.read(|txn| {
            let t = txn.open_table(MODULES)?;
            let mut out = Vec::new();
            for entry in t.range(prefix..)? {
                let (k, v) = entry?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_owned(), records::decode(v.value())?));
            }
            Ok(out)
        })
    }

    fn module_bytes(&self, digest: &str) -> R<Option<Vec<u8>>> {
        self.read(|txn| {
            let t = txn.open_table(BLOBS)?;
            Ok(t.get(digest)?.map(|v| v.value().to_vec()))
        })
    }

    fn tenants(&self) -> R<Vec<(String, TenantRecord)>> {
        self.all(TENANTS)
    }

    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>> {
        self.all(KEYS)
    }

    fn meta(&self, key: &str) -> R<Option<Vec<u8>>> {
        self.read(|txn| {
            let t = txn.open_table(META)?;
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    fn meta_keys(&self, prefix: &str) -> R<Vec<String>> {
        self.read(|txn| {
            let meta = txn.open_table(META)?;
            let mut keys = Vec::new();
            for entry in meta.range(prefix..)? {
                let (k, _) = entry?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                keys.push(k.value().to_owned());
            }
            Ok(keys)
        })
    }

    fn tenant_actor_count(&self, tenant: &str) -> R<u64> {
        self.read(|txn| {
            let t = txn.open_table(TENANT_ACTORS)?;
            Ok(t.get(tenant)?.map(|v| v.value()).unwrap_or(0))
        })
    }

    fn actor_total(&self) -> R<u64> {
        self.read(|txn| Ok(txn.open_table(ACTORS)?.len()?))
    }

    /// Table lengths: redb keeps each table's length in its header.
    fn backlog(&self) -> R<dwell_storage::Backlog> {
        self.read(|txn| {
            Ok(dwell_storage::Backlog {
                mailbox: txn.open_table(MAILBOX)?.len()?,
                timers: txn.open_table(TIMERS)?.len()?,
                outbox: txn.open_table(OUTBOX)?.len()?,
            })
        })
    }

    /// The mailbox holds only unprocessed messages, so it is its own index: one seek
    /// per actor with mail, not a scan of every actor.
    fn ready_actors(&self) -> R<Vec<String>> {
        self.read(|txn| {
            let t = txn.open_table(MAILBOX)?;
            let mut out = Vec::new();
            let mut next = t.first()?.map(|(k, _)| k.value().0.to_owned());
            while let Some(key) = next {
                next = t
                    .range((key.as_str(), u64::MAX)..)?
                    .find_map(|e| e.ok())
                    .map(|(k, _)| k.value().0.to_owned())
                    .filter(|k| *k != key);
                out.push(key);
            }
            Ok(out)
        })
    }

    fn inbox(&self, after: Option<u64>, max: usize) -> R<Vec<(u64, String)>> {
        self.read(|txn| {
            let t = txn.open_table(INBOX)?;
            let from = after.map_or(0, |a| a.saturating_add(1));
            let mut out = Vec::new();
            for entry in t.range(from..)?.take(max) {
                let (id, v) = entry?;
                out.push((id.value(), v.value().0.to_owned()));
            }
            Ok(out)
        })
    }

    fn next_timer_due(&self) -> R<Option<UnixMs>> {
        self.read(|txn| {
            let t = txn.open_table(TIMERS)?;
            Ok(t.first()?.map(|(k, _)| k.value().0))
        })
    }

    fn timers_after(
        &self,
        after: Option<&TimerKey>,
        until: UnixMs,
        max: usize,
    ) -> R<Vec<(TimerKey, Vec<u8>)>> {
        use std::ops::Bound;
        self.read(|txn| {
            let t = txn.open_table(TIMERS)?;
            let start = match after {
                Some((d, a, n)) => Bound::Excluded((*d, a.as_str(), n.as_str())),
                None => Bound::Unbounded,
            };
            let end = Bound::Excluded((until.saturating_add(1), "", ""));
            let mut out = Vec::new();
            for entry in t.range::<(u64, &str, &str)>((start, end))? {
                let (k, v) = entry?;
                let (d, a, n) = k.value();
                out.push(((d, a.to_owned(), n.to_owned()), v.value().to_vec()));
                if out.len() >= max {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn timers_of(&self, key: &str) -> R<Vec<(String, UnixMs)>> {
        self.read(|txn| {
            let t = txn.open_table(TIMER_INDEX)?;
            let mut out = Vec::new();
            for entry in t.range((key, "")..(key, NAME_END))? {
                let (k, v) = entry?;
                out.push((k.value().1.to_owned(), v.value()));
                if out.len() >= 1000 {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn outbox_due(&self, now: UnixMs, max: usize) -> R<Vec<(u128, OutboxEntry)>> {
        self.read(|txn| {
            let due = txn.open_table(OUTBOX_DUE)?;
            let outbox = txn.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for entry in due.range(..(now.saturating_add(1), 0))? {
                let (k, _) = entry?;
                let id = k.value().1;
                if let Some(v) = outbox.get(id)? {
                    out.push((id, records::decode(v.value())?));
                }
                if out.len() >= max {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn next_outbox_due(&self) -> R<Option<UnixMs>> {
        self.read(|txn| {
            let t = txn.open_table(OUTBOX_DUE)?;
            Ok(t.first()?.map(|(k, _)| k.value().0))
        })
    }

    fn http_pending_of(&self, key: &str) -> R<Vec<OutboxEntry>> {
        self.read(|txn| {
            let pending = txn.open_table(HTTP_PENDING)?;
            let outbox = txn.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for entry in pending.range((key, "")..(key, "\u{10ffff}"))? {
                let (_, id) = entry?;
                if let Some(v) = outbox.get(id.value())? {
                    out.push(records::decode(v.value())?);
                }
                if out.len() >= 1000 {
                    break;
                }
            }
            Ok(out)
        })
    }
}

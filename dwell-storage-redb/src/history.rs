//! Turn history on redb: two append-only logs shared by all actors, one of turn records
//! ([`TURN_LOG`]) and one of the states after turns ([`STATE_LOG`]), keyed by a position
//! that only grows. A turn appends its record (and its state, when kept) at the end of
//! a log, which touches only the rightmost leaf of the B-tree; keys per actor inserted
//! and removed a record in the middle of a big tree on every turn (measured: with long
//! histories that layout cost durable events ~20% of their throughput, this one ~5%).
//!
//! Each entry names the position of its actor's entry before it, so an actor's history
//! is a chain read newest first from its record (`ActorMeta::history`, a [`Chain`] per
//! log). Entries are never removed one by one: at the end of a write transaction that
//! appended, [`Log::sweep`] deletes a range from the front of a log once the log holds
//! more than twice its live entries plus some slack, having first moved to the end the
//! chains of actors with live entries in that range. A log therefore stays below
//! 2 × live + slack entries, and a move costs at most about one per append.

use std::collections::HashMap;

use dwell_types::history::{Chain, HistoryHead, TurnRecord};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::Error;
use crate::records::{self, ActorMeta};

type R<T> = Result<T, Error>;

/// position → turn record entry (the body is an encoded [`TurnRecord`]).
pub const TURN_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("history_turns");
/// position → state entry (the body is the guest's state, as given).
pub const STATE_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("history_states_log");

/// The log holds at most twice its live entries plus this many before a sweep.
pub const SLACK: u64 = 4096;

/// `prev` of an actor's first entry.
const NO_PREV: u64 = u64::MAX;
const HEADER: usize = 8 + 8 + 2;

/// One entry of a log: `seq | prev | key length | key | body`.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub seq: u64,
    pub prev: Option<u64>,
    pub key: &'a str,
    pub body: &'a [u8],
}

impl<'a> Entry<'a> {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.key.len() + self.body.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.prev.unwrap_or(NO_PREV).to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(self.body);
        out
    }

    fn decode(bytes: &'a [u8]) -> R<Entry<'a>> {
        let corrupt = || Error::Corrupt("history entry".into());
        if bytes.len() < HEADER {
            return Err(corrupt());
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let key_len = u16::from_le_bytes([bytes[16], bytes[17]]) as usize;
        let key = bytes
            .get(HEADER..HEADER + key_len)
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or_else(corrupt)?;
        let prev = u64_at(8);
        Ok(Entry {
            seq: u64_at(0),
            prev: (prev != NO_PREV).then_some(prev),
            key,
            body: &bytes[HEADER + key_len..],
        })
    }
}

/// Calls `f` with the entries of `chain` still kept, newest first, while it says `true`.
fn walk(
    log: &impl ReadableTable<u64, &'static [u8]>,
    chain: &Chain,
    mut f: impl FnMut(Entry<'_>) -> R<bool>,
) -> R<()> {
    let mut at = chain.head;
    while let Some(pos) = at.filter(|&p| p >= chain.base) {
        let Some(v) = log.get(pos)? else { break };
        let entry = Entry::decode(v.value())?;
        if entry.seq < chain.floor || !f(entry)? {
            break;
        }
        at = entry.prev;
    }
    Ok(())
}

/// Up to `max` of the actor's records with a seq below `before`, newest first.
pub(crate) fn records_of(
    log: &impl ReadableTable<u64, &'static [u8]>,
    meta: &ActorMeta,
    before: Option<u64>,
    max: usize,
) -> R<Vec<(u64, TurnRecord)>> {
    let mut out = Vec::new();
    if max == 0 {
        return Ok(out);
    }
    walk(log, &meta.history.turns, |e| {
        if before.is_none_or(|b| e.seq < b) {
            out.push((e.seq, records::decode(e.body)?));
        }
        Ok(out.len() < max)
    })?;
    Ok(out)
}

/// The state kept after the actor's turn `seq`.
pub(crate) fn state_of(
    log: &impl ReadableTable<u64, &'static [u8]>,
    meta: &ActorMeta,
    seq: u64,
) -> R<Option<Vec<u8>>> {
    let mut found = None;
    walk(log, &meta.history.states, |e| {
        if e.seq == seq {
            found = Some(e.body.to_vec());
        }
        Ok(e.seq > seq)
    })?;
    Ok(found)
}

/// Which of an actor's chains a log holds.
pub(crate) type Pick = fn(&mut HistoryHead) -> &mut Chain;

/// One log, open in a write transaction.
pub(crate) struct Log<'t> {
    table: Table<'t, u64, &'static [u8]>,
    pick: Pick,
    /// The `meta` key of the log's count of live entries (Σ `Chain::len`).
    live_key: &'static str,
    /// Position of the next entry, once read.
    next: Option<u64>,
    /// The live count, once read, and whether this transaction changed it.
    live: Option<u64>,
    live_changed: bool,
    /// Entries appended by turns in this transaction (moves not counted).
    appended: u64,
}

impl<'t> Log<'t> {
    pub fn open(
        txn: &'t WriteTransaction,
        def: TableDefinition<u64, &'static [u8]>,
        pick: Pick,
        live_key: &'static str,
    ) -> R<Self> {
        Ok(Log {
            table: txn.open_table(def)?,
            pick,
            live_key,
            next: None,
            live: None,
            live_changed: false,
            appended: 0,
        })
    }

    pub fn table(&self) -> &Table<'t, u64, &'static [u8]> {
        &self.table
    }

    fn next(&mut self) -> R<u64> {
        if let Some(n) = self.next {
            return Ok(n);
        }
        let n = self.table.last()?.map_or(0, |(k, _)| k.value() + 1);
        self.next = Some(n);
        Ok(n)
    }

    fn push(&mut self, entry: Entry<'_>) -> R<u64> {
        let pos = self.next()?;
        self.table.insert(pos, entry.encode().as_slice())?;
        self.next = Some(pos + 1);
        Ok(pos)
    }

    fn live(&mut self, meta: &Table<'t, &'static str, &'static [u8]>) -> R<u64> {
        if let Some(n) = self.live {
            return Ok(n);
        }
        let n =
            match meta.get(self.live_key)? {
                Some(v) => u64::from_le_bytes(v.value().try_into().map_err(|_| {
                    Error::Corrupt(format!("meta {} is not a count", self.live_key))
                })?),
                None => 0,
            };
        self.live = Some(n);
        Ok(n)
    }

    fn add_live(
        &mut self,
        meta: &Table<'t, &'static str, &'static [u8]>,
        add: u64,
        sub: u64,
    ) -> R<()> {
        let n = self.live(meta)?;
        self.live = Some((n + add).saturating_sub(sub));
        self.live_changed |= add != sub;
        Ok(())
    }

    /// Append the actor's entry for turn `seq`, keeping the last `keep` turns' entries.
    pub fn append(
        &mut self,
        meta: &Table<'t, &'static str, &'static [u8]>,
        head: &mut HistoryHead,
        key: &str,
        seq: u64,
        body: &[u8],
        keep: u64,
    ) -> R<()> {
        let chain = (self.pick)(head);
        let pos = self.push(Entry {
            seq,
            prev: chain.head,
            key,
            body,
        })?;
        if chain.head.is_none() {
            chain.base = pos;
        }
        chain.head = Some(pos);
        chain.floor = chain.floor.max((seq + 1).saturating_sub(keep));
        let (old, len) = (chain.len, (chain.len + 1).min(keep));
        chain.len = len;
        self.appended += 1;
        self.add_live(meta, len, old)
    }

    /// The actor's entries are no longer live (its record is about to go).
    pub fn forget(
        &mut self,
        meta: &Table<'t, &'static str, &'static [u8]>,
        head: &mut HistoryHead,
    ) -> R<()> {
        let len = (self.pick)(head).len;
        self.add_live(meta, 0, len)
    }

    /// After the transaction's turns: delete from the front of the log if it is over
    /// its bound (see the module docs), at most a few times what this transaction
    /// appended, and store the live count.
    pub fn finish(
        &mut self,
        meta: &mut Table<'t, &'static str, &'static [u8]>,
        actors: &mut Table<'t, &'static str, &'static [u8]>,
        slack: u64,
    ) -> R<()> {
        if self.appended > 0 {
            self.sweep(meta, actors, slack)?;
        }
        if let Some(n) = self.live.filter(|_| self.live_changed) {
            meta.insert(self.live_key, n.to_le_bytes().as_slice())?;
        }
        Ok(())
    }

    fn sweep(
        &mut self,
        meta: &Table<'t, &'static str, &'static [u8]>,
        actors: &mut Table<'t, &'static str, &'static [u8]>,
        slack: u64,
    ) -> R<()> {
        let Some(first) = self.table.first()?.map(|(k, _)| k.value()) else {
            return Ok(());
        };
        let next = self.next()?;
        // Positions from `first` to `next` are all taken: entries go only from the front.
        if next - first <= 2 * self.live(meta)? + slack {
            return Ok(());
        }
        let end = next.min(first + 4 * self.appended + 64);
        // The actors whose chain still has an entry in the range.
        // (`None` once found, or for an actor that is gone.)
        let mut chains: HashMap<String, Option<Chain>> = HashMap::new();
        let mut moving = Vec::new();
        for item in self.table.range(first..end)? {
            let (k, v) = item?;
            let entry = Entry::decode(v.value())?;
            if !chains.contains_key(entry.key) {
                let chain = match actors.get(entry.key)? {
                    Some(m) => {
                        let mut meta: ActorMeta = records::decode(m.value())?;
                        Some(*(self.pick)(&mut meta.history))
                    }
                    None => None,
                };
                chains.insert(entry.key.to_owned(), chain);
            }
            let live = chains[entry.key]
                .is_some_and(|c| c.head.is_some() && k.value() >= c.base && entry.seq >= c.floor);
            if live {
                chains.insert(entry.key.to_owned(), None);
                moving.push(entry.key.to_owned());
            }
        }
        for key in moving {
            self.move_chain(actors, &key)?;
        }
        self.table.retain_in(first..end, |_, _| false)?;
        Ok(())
    }

    /// Copy the actor's kept entries to the end of the log, oldest first.
    fn move_chain(
        &mut self,
        actors: &mut Table<'t, &'static str, &'static [u8]>,
        key: &str,
    ) -> R<()> {
        let Some(mut meta) = actors
            .get(key)?
            .map(|m| records::decode::<ActorMeta>(m.value()))
            .transpose()?
        else {
            return Ok(());
        };
        let mut kept = Vec::new();
        walk(&self.table, (self.pick)(&mut meta.history), |e| {
            kept.push((e.seq, e.body.to_vec()));
            Ok(true)
        })?;
        let mut prev = None;
        for (seq, body) in kept.iter().rev() {
            let pos = self.push(Entry {
                seq: *seq,
                prev,
                key,
                body,
            })?;
            let chain = (self.pick)(&mut meta.history);
            if prev.is_none() {
                chain.base = pos;
            }
            chain.head = Some(pos);
            prev = Some(pos);
        }
        actors.insert(key, records::encode(&meta).as_slice())?;
        Ok(())
    }
}

pub(crate) fn turns(h: &mut HistoryHead) -> &mut Chain {
    &mut h.turns
}

pub(crate) fn states(h: &mut HistoryHead) -> &mut Chain {
    &mut h.states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written() {
        let e = Entry {
            seq: 7,
            prev: Some(3),
            key: "t/m/k",
            body: b"body",
        };
        let bytes = e.encode();
        let d = Entry::decode(&bytes).unwrap();
        assert_eq!(
            (d.seq, d.prev, d.key, d.body),
            (7, Some(3), "t/m/k", &b"body"[..])
        );
        let first = Entry { prev: None, ..e }.encode();
        assert_eq!(Entry::decode(&first).unwrap().prev, None);
        assert!(Entry::decode(&bytes[..10]).is_err());
        assert!(Entry::decode(&bytes[..HEADER + 2]).is_err());
    }
}

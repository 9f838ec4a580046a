//! The writes of one transaction, held back and sent together: a batch's puts and
//! removals of the hot tables (actors, states, mailbox, requests, timers, outbox, …)
//! wait here, and [`Batch::flush`] sends them as **one statement** — a multi-row
//! `unnest` upsert and a multi-row delete per table, joined as data-modifying `WITH`
//! clauses — so a group commit of N turns costs a constant number of write round trips
//! instead of several per turn.
//!
//! Reads see the batch first: a point read of a row written or removed in this
//! transaction is answered here (no round trip); a scan of a table with held writes
//! flushes first. Rows read from the server (or prefetched for a batch: its actors, the
//! messages its turns take) are remembered for the rest of the transaction — this
//! transaction is the only writer of its partition, so they stay true until a statement
//! other than the flush writes their table ([`Batch::forget`]). Within one table the held rows have distinct keys (the last write to
//! a key wins, as it would have on the server), so the order of the flushed upserts and
//! deletes does not matter; the tables carry no constraints between them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use postgres::types::ToSql;

/// A column's SQL type, as the arrays of the flush name it.
#[derive(Clone, Copy)]
pub(crate) enum Ty {
    Text,
    Bytes,
    Int,
}

/// A table whose writes the batch holds: its key columns and value columns.
pub(crate) struct Table {
    pub(crate) id: usize,
    pub(crate) name: &'static str,
    pub(crate) keys: &'static [(&'static str, Ty)],
    pub(crate) vals: &'static [(&'static str, Ty)],
}

macro_rules! tables {
    ($($id:literal $konst:ident $name:literal [$($k:literal: $kt:ident),+] [$($v:literal: $vt:ident),+];)+) => {
        $(pub(crate) const $konst: Table = Table {
            id: $id,
            name: $name,
            keys: &[$(($k, Ty::$kt)),+],
            vals: &[$(($v, Ty::$vt)),+],
        };)+
        const TABLES: &[Table] = &[$($konst),+];
    };
}

tables! {
    0 ACTORS "actors" ["key": Text] ["meta": Bytes];
    1 STATES "states" ["key": Text] ["state": Bytes];
    2 MAILBOX "mailbox" ["key": Text, "seq": Int] ["envelope": Bytes];
    3 DEAD "dead_letters" ["key": Text, "seq": Int] ["letter": Bytes];
    4 REQUESTS "requests" ["id": Bytes] ["record": Bytes];
    5 TIMERS "timers" ["key": Text, "name": Text] ["due": Int, "payload": Bytes];
    6 OUTBOX "outbox" ["id": Bytes] ["due": Int, "entry": Bytes];
    7 HTTP_PENDING "http_pending" ["key": Text, "call": Text] ["id": Bytes];
    8 IDEMPOTENCY "idempotency" ["tenant": Text, "key": Text] ["expires": Int, "record": Bytes];
    9 ACTOR_COUNTS "actor_counts" ["tenant": Text] ["count": Int];
    10 HISTORY "history" ["key": Text, "seq": Int] ["record": Bytes];
    11 HISTORY_STATES "history_states" ["key": Text, "seq": Int] ["state": Bytes];
}

/// One column's value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum V {
    T(String),
    B(Vec<u8>),
    I(i64),
}

impl V {
    pub(crate) fn bytes(self) -> Vec<u8> {
        match self {
            V::B(b) => b,
            other => panic!("column holds {other:?}, not bytes"),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            V::B(b) => b,
            other => panic!("column holds {other:?}, not bytes"),
        }
    }

    pub(crate) fn int(&self) -> i64 {
        match self {
            V::I(i) => *i,
            other => panic!("column holds {other:?}, not an integer"),
        }
    }
}

pub(crate) type Key = Vec<V>;
pub(crate) type Vals = Vec<V>;

/// The held writes of one transaction.
#[derive(Default)]
pub(crate) struct Batch {
    /// Per table: key → its new value columns, or `None` for a removal.
    rows: Vec<BTreeMap<Key, Option<Vals>>>,
    /// Actors whose large state (its `state_refs` row and slices) goes with the flush:
    /// a small state was put in its place.
    drop_refs: BTreeSet<String>,
    /// Rows as the server has them, read earlier in this transaction.
    seen: HashMap<(usize, Key), Option<Vals>>,
    /// Per actor, the highest mailbox seq the server has (`None`: an empty mailbox).
    mail_max: HashMap<String, Option<i64>>,
}

impl Batch {
    fn table(&mut self, t: &Table) -> &mut BTreeMap<Key, Option<Vals>> {
        if self.rows.is_empty() {
            self.rows = TABLES.iter().map(|_| BTreeMap::new()).collect();
        }
        &mut self.rows[t.id]
    }

    /// What this transaction wrote to the row: `Some(None)` if it removed it, `None`
    /// if it did not touch it (ask the server).
    pub(crate) fn get(&self, t: &Table, key: &[V]) -> Option<Option<&Vals>> {
        self.rows
            .get(t.id)
            .and_then(|rows| rows.get(key))
            .map(Option::as_ref)
    }

    /// The row as this transaction knows it (held, else seen on the server), if it does.
    pub(crate) fn known(&self, t: &Table, key: &[V]) -> Option<Option<Vals>> {
        if let Some(held) = self.get(t, key) {
            return Some(held.cloned());
        }
        self.seen.get(&(t.id, key.to_vec())).cloned()
    }

    /// The server has `vals` (or no row) at `key`.
    pub(crate) fn saw(&mut self, t: &Table, key: Key, vals: Option<Vals>) {
        self.seen.insert((t.id, key), vals);
    }

    pub(crate) fn mail_max(&self, key: &str) -> Option<Option<i64>> {
        self.mail_max.get(key).copied()
    }

    pub(crate) fn saw_mail_max(&mut self, key: String, max: Option<i64>) {
        self.mail_max.insert(key, max);
    }

    /// A statement besides the flush wrote to a table: what was seen may be stale.
    pub(crate) fn forget(&mut self) {
        self.seen.clear();
        self.mail_max.clear();
    }

    pub(crate) fn put(&mut self, t: &Table, key: Key, vals: Vals) {
        debug_assert_eq!(key.len(), t.keys.len());
        debug_assert_eq!(vals.len(), t.vals.len());
        self.table(t).insert(key, Some(vals));
    }

    pub(crate) fn remove(&mut self, t: &Table, key: Key) {
        self.table(t).insert(key, None);
    }

    pub(crate) fn drop_ref(&mut self, key: &str) {
        self.drop_refs.insert(key.to_owned());
    }

    /// The held rows whose key starts with `prefix` (the first key columns), in key order.
    pub(crate) fn with_prefix<'a>(
        &'a self,
        t: &Table,
        prefix: &'a [V],
    ) -> impl Iterator<Item = (&'a Key, &'a Option<Vals>)> + 'a {
        let rows = self.rows.get(t.id);
        rows.into_iter().flat_map(move |rows| {
            rows.range(prefix.to_vec()..)
                .take_while(move |(k, _)| k.starts_with(prefix))
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.drop_refs.is_empty() && self.rows.iter().all(BTreeMap::is_empty)
    }

    /// The one statement that writes everything held, with its parameters (the
    /// statement's text depends only on which tables have upserts or deletes, so few
    /// distinct texts exist and each is prepared once). The held rows become rows seen
    /// on the server (the statement must then succeed, or the transaction is dropped).
    pub(crate) fn take_statement(&mut self) -> (String, Vec<Box<dyn ToSql + Sync>>) {
        let mut clauses = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let arg = |params: &mut Vec<Box<dyn ToSql + Sync>>, p: Box<dyn ToSql + Sync>| {
            params.push(p);
            params.len()
        };
        if !self.drop_refs.is_empty() {
            let keys: Vec<String> = std::mem::take(&mut self.drop_refs).into_iter().collect();
            let n = arg(&mut params, Box::new(keys));
            clauses.push(format!(
                "r AS (DELETE FROM state_refs WHERE key = ANY(${n}::text[]) RETURNING id), \
                 rs AS (DELETE FROM state_slices WHERE id IN (SELECT id FROM r))"
            ));
        }
        self.mail_max.clear();
        for (t, rows) in TABLES.iter().zip(std::mem::take(&mut self.rows)) {
            let (mut puts, mut gone) = (Vec::new(), Vec::new());
            for (key, vals) in rows {
                match &vals {
                    Some(vals) => puts.push(key.iter().chain(vals).cloned().collect::<Vec<V>>()),
                    None => gone.push(key.clone()),
                }
                self.seen.insert((t.id, key), vals);
            }
            if !puts.is_empty() {
                let cols: Vec<_> = t.keys.iter().chain(t.vals).collect();
                let mut args = String::new();
                for (i, (_, ty)) in cols.iter().enumerate() {
                    let n = arg(&mut params, column(&puts, i, *ty));
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(args, "{sep}${n}::{}[]", sql_type(*ty));
                }
                let names =
                    |cs: &[(&str, Ty)]| cs.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
                let sets = t
                    .vals
                    .iter()
                    .map(|(c, _)| format!("{c} = EXCLUDED.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                clauses.push(format!(
                    "p{id} AS (INSERT INTO {name} ({keys}, {vals}) SELECT * FROM unnest({args}) \
                     ON CONFLICT ({keys}) DO UPDATE SET {sets})",
                    id = t.id,
                    name = t.name,
                    keys = names(t.keys),
                    vals = names(t.vals),
                ));
            }
            if !gone.is_empty() {
                let mut args = String::new();
                let mut cond = String::new();
                for (i, (c, ty)) in t.keys.iter().enumerate() {
                    let n = arg(&mut params, column(&gone, i, *ty));
                    let sep = if i == 0 { "" } else { ", " };
                    let _ = write!(args, "{sep}${n}::{}[]", sql_type(*ty));
                    let and = if i == 0 { "" } else { " AND " };
                    let collate = if matches!(ty, Ty::Text) {
                        " COLLATE \"C\""
                    } else {
                        ""
                    };
                    let _ = write!(cond, "{and}t.{c} = u.k{i}{collate}");
                }
                let ks = (0..t.keys.len())
                    .map(|i| format!("k{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                clauses.push(format!(
                    "d{id} AS (DELETE FROM {name} t USING unnest({args}) AS u({ks}) WHERE {cond})",
                    id = t.id,
                    name = t.name,
                ));
            }
        }
        self.rows.clear();
        (format!("WITH {} SELECT 1", clauses.join(", ")), params)
    }
}

fn sql_type(ty: Ty) -> &'static str {
    match ty {
        Ty::Text => "text",
        Ty::Bytes => "bytea",
        Ty::Int => "int8",
    }
}

/// Column `i` of `rows` as one typed array parameter.
fn column(rows: &[Vec<V>], i: usize, ty: Ty) -> Box<dyn ToSql + Sync> {
    let cells = rows.iter().map(|r| r[i].clone());
    match ty {
        Ty::Text => Box::new(
            cells
                .map(|v| match v {
                    V::T(s) => s,
                    other => panic!("text column holds {other:?}"),
                })
                .collect::<Vec<String>>(),
        ),
        Ty::Bytes => Box::new(cells.map(V::bytes).collect::<Vec<Vec<u8>>>()),
        Ty::Int => Box::new(cells.map(|v| v.int()).collect::<Vec<i64>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_to_a_key_wins_and_one_statement_carries_all() {
        let mut b = Batch::default();
        b.put(&ACTORS, vec![V::T("a".into())], vec![V::B(vec![1])]);
        b.remove(&ACTORS, vec![V::T("a".into())]);
        b.put(&ACTORS, vec![V::T("b".into())], vec![V::B(vec![2])]);
        b.put(
            &MAILBOX,
            vec![V::T("a".into()), V::I(3)],
            vec![V::B(vec![3])],
        );
        assert_eq!(b.get(&ACTORS, &[V::T("a".into())]), Some(None));
        assert!(b.get(&ACTORS, &[V::T("c".into())]).is_none());
        let seqs: Vec<_> = b
            .with_prefix(&MAILBOX, &[V::T("a".into())])
            .map(|(k, _)| k[1].int())
            .collect();
        assert_eq!(seqs, [3]);
        let (sql, params) = b.take_statement();
        assert!(b.is_empty());
        // actors: one upsert (b) and one delete (a); mailbox: one upsert.
        assert_eq!(sql.matches("INSERT INTO").count(), 2, "{sql}");
        assert_eq!(sql.matches("DELETE FROM").count(), 1, "{sql}");
        assert_eq!(params.len(), 2 + 1 + 3);
    }
}

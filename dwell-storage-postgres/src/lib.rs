//! The storage contract ([`dwell_storage::Tables`]) on PostgreSQL.
//! Long because it is the whole contract in SQL: one short method per table operation.
//!
//! [`Postgres::connect`] opens a connection and applies the embedded schema
//! (`schema.sql`, idempotent); [`Postgres::write`] runs one transaction through
//! [`PgTables`] and commits it — a backend's writer calls it once per batch, so a batch is
//! one transaction and one commit, and nothing of it is visible before the commit.
//! Records are stored as the redb file stores them (a schema byte and MessagePack);
//! keys are columns, text keys `COLLATE "C"` so scans come in the same order as redb's.
//! Every commit first checks that this node still holds its partitions at the epochs it
//! claimed them at (a single node holds partition 0; see [`cluster`]); a node that lost
//! one gets [`Error::Fenced`].
//!
//! [`open`] gives the node's write side ([`PgWriter`], a [`dwell_storage::Backend`])
//! and [`PgReads`], the read side ([`dwell_storage::Reads`]); [`cluster`] is the
//! membership of several nodes on one database (leases, partition owners, fencing). `dwell serve --store
//! postgres://…` runs on both; the conformance suite runs in this crate's tests.

mod batch;
pub mod cluster;
mod reads;
mod writer;
pub use reads::PgReads;
pub use writer::{PgWriter, open, open_member};

use batch::{
    ACTOR_COUNTS, ACTORS, Batch, DEAD, HISTORY, HISTORY_STATES, HTTP_PENDING, IDEMPOTENCY, MAILBOX,
    OUTBOX, REQUESTS, STATES, TIMERS, Table, V, Vals,
};

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use dwell_types::placement::{Placement, partition_of};

use dwell_storage::{Error, StateRef, Tables, TimerKey};
use dwell_types::history::{Retention, TurnRecord};
use dwell_types::records::{
    ActorMeta, DeadLetter, IdempotencyRecord, KeyRecord, ModuleRecord, OutboxEntry, PurgeJob,
    RequestRecord, TenantRecord,
};
use dwell_types::{Envelope, UnixMs};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Transaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) type R<T> = Result<T, Error>;

/// The schema, applied at every start (each statement is idempotent).
pub const SCHEMA: &str = include_str!("schema.sql");

/// Record encoding: the schema byte, then MessagePack (as in the redb file).
const RECORD: u8 = 1;

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![RECORD];
    rmp_serde::encode::write(&mut out, v).expect("record encoding");
    out
}

pub(crate) fn dec<T: DeserializeOwned>(bytes: &[u8]) -> R<T> {
    match bytes.split_first() {
        Some((&RECORD, rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| Error::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(Error::Corrupt(format!("unknown schema version {v}"))),
        None => Err(Error::Corrupt("empty record".into())),
    }
}

/// PostgreSQL's failure in the contract's terms, with the server's own words (its
/// message, or the chain of causes of a connection failure).
pub fn pg_error(e: postgres::Error) -> Error {
    use postgres::error::SqlState;
    if let Some(code) = e.code() {
        if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
            return Error::Full;
        }
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return Error::Conflict;
        }
        if code.code().starts_with("08") || code.code().starts_with("57P") {
            return Error::Unavailable;
        }
        if *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT {
            // A cluster node's transaction stalled past half its lease (the node was
            // paused): the server ended it, so nothing of it landed, and the node's
            // partitions may be another's by now — fenced, like a stale epoch.
            tracing::warn!(
                "the server ended a transaction left idle for half the lease (was this node paused?): nothing of it landed"
            );
            return Error::Fenced;
        }
        return Error::Backend(describe(&e));
    }
    if e.is_closed() {
        return Error::Unavailable;
    }
    Error::Backend(describe(&e))
}

/// `e` and its causes, or the database's message for a database error.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("PostgreSQL: {}", db.message());
    }
    let mut text = format!("PostgreSQL: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Seqs, due times and counters are `u64` in Dwell and `bigint` here: the values Dwell
/// writes fit; bounds past `i64::MAX` (e.g. "every timer") are clamped.
pub(crate) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A staged state's id (random over all of `u64`) as a `bigint`, bit for bit: unlike
/// counters it cannot be clamped (two ids past `i64::MAX` would become one).
fn slices_id(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

pub(crate) fn unbig(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Up to `max` records of an actor's history below `before`, newest first (the write
/// transaction and the readers share it).
pub(crate) fn history_of(
    c: &impl Sql,
    key: &str,
    before: Option<u64>,
    max: usize,
) -> R<Vec<(u64, TurnRecord)>> {
    let end = before.map_or(i64::MAX, big);
    c.rows(
        "SELECT seq, record FROM history WHERE key = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        &[&key, &end, &limit(max)],
    )?
    .iter()
    .map(|r| Ok((unbig(r.get(0)), dec(r.get::<_, &[u8]>(1))?)))
    .collect()
}

pub(crate) fn id(v: u128) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub(crate) fn unid(b: &[u8]) -> R<u128> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| Error::Corrupt("an id is not 16 bytes".into()))?;
    Ok(u128::from_be_bytes(arr))
}

/// `max` as a `LIMIT`.
pub(crate) fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

/// A connection to the database holding one node's tables.
pub struct Postgres {
    client: Client,
    /// What every commit is fenced on.
    fencing: Fencing,
    statements: Statements,
    /// Statements executed by writes so far (BEGIN and COMMIT included).
    executed: u64,
    /// How long the server keeps a transaction this session left open (a cluster
    /// node's: see [`writer_session`]).
    idle: Option<std::time::Duration>,
}

/// What a commit checks before it lands.
#[derive(Clone)]
enum Fencing {
    /// A single node: it holds these partitions (partition 0) at these epochs, and
    /// writes every actor.
    Node(cluster::Held),
    /// A cluster node: every partition a commit writes must be one this node holds, at
    /// the epoch it claimed (the placement its membership keeps up to date).
    Cluster(Arc<Placement>),
}

/// Statements prepared once per connection (PostgreSQL keeps them for the session;
/// a statement that is not prepared again costs one round trip less).
#[derive(Default)]
pub(crate) struct Statements(std::collections::HashMap<String, postgres::Statement>);

impl Statements {
    pub(crate) fn get(
        &mut self,
        c: &mut impl postgres::GenericClient,
        sql: &str,
    ) -> R<postgres::Statement> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql).map_err(pg_error)?;
        self.0.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// The writer's connection. Its statements look rows up by key — one, or a batch's
/// array of keys through `unnest` — so the generic plan (index lookups) is always right,
/// and forcing it saves planning them again at every execution: PostgreSQL otherwise
/// keeps planning an `unnest` statement afresh (its custom plan knows the array's
/// length), which cost 0.2 ms per batch, as much as the statement itself.
///
/// A cluster node's sessions also end a transaction left open longer than `idle`
/// (`idle_in_transaction_session_timeout`): a node paused mid-commit (SIGSTOP, a VM
/// freeze) would otherwise keep its rows locked — partition rows `FOR SHARE`, actor
/// rows it updated — and no other node could claim or write them until it woke up.
/// The server ends such a session; the node connects again when it resumes.
fn writer_session(url: &str, idle: Option<std::time::Duration>) -> R<Client> {
    let mut client = Client::connect(url, NoTls).map_err(pg_error)?;
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .map_err(pg_error)?;
    if let Some(idle) = idle {
        bound_idle_transactions(&mut client, idle)?;
    }
    Ok(client)
}

/// `SET idle_in_transaction_session_timeout` to `idle` (at least 1 ms).
pub(crate) fn bound_idle_transactions(client: &mut Client, idle: std::time::Duration) -> R<()> {
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {}",
            idle.as_millis().max(1)
        ))
        .map_err(pg_error)
}

impl Postgres {
    /// Connect (`postgres://…` or `host=… port=…`), apply the schema, and take
    /// partition 0 (one node owns every partition today): its epoch goes up by one, so a
    /// node that held it before is fenced at its next commit.
    pub fn connect(url: &str, owner: &str) -> R<Postgres> {
        let mut client = writer_session(url, None)?;
        client.batch_execute(SCHEMA).map_err(pg_error)?;
        let row = client
            .query_one(
                "UPDATE partitions SET epoch = epoch + 1, owner = $1 WHERE partition = 0 RETURNING epoch",
                &[&owner],
            )
            .map_err(pg_error)?;
        Ok(Postgres {
            client,
            fencing: Fencing::Node([(0, row.get(0))].into()),
            statements: Statements::default(),
            executed: 0,
            idle: None,
        })
    }

    /// Connect as a cluster node's writer: apply the schema; each commit is fenced on
    /// the partitions it writes, at the epochs `placement` holds them at (what the
    /// node's [`cluster::Membership`] claimed), claiming nothing itself. A transaction
    /// left open longer than `idle` is ended by the server (see [`writer_session`]).
    pub fn connect_member(
        url: &str,
        placement: Arc<Placement>,
        idle: std::time::Duration,
    ) -> R<Postgres> {
        let mut client = writer_session(url, Some(idle))?;
        client.batch_execute(SCHEMA).map_err(pg_error)?;
        Ok(Postgres {
            client,
            fencing: Fencing::Cluster(placement),
            statements: Statements::default(),
            executed: 0,
            idle: Some(idle),
        })
    }

    /// Connect again after the connection was lost, keeping the partition epoch this
    /// node claimed: if another node took the partition meanwhile, the next write is
    /// [`Error::Fenced`].
    pub fn resume(&self, url: &str) -> R<Postgres> {
        let client = writer_session(url, self.idle)?;
        Ok(Postgres {
            client,
            fencing: self.fencing.clone(),
            statements: Statements::default(),
            executed: self.executed,
            idle: self.idle,
        })
    }

    /// Drop the slices no state points at: those staged by batches that never
    /// committed (call at start, before the first write).
    pub fn drop_staged(&mut self) -> R<u64> {
        self.client
            .execute(
                "DELETE FROM state_slices s WHERE NOT EXISTS (SELECT 1 FROM state_refs r WHERE r.id = s.id)",
                &[],
            )
            .map_err(pg_error)
    }

    /// Statements executed by writes so far (BEGIN and COMMIT included): a measure
    /// of round trips per turn for the benchmark.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub fn executed(&self) -> u64 {
        self.executed
    }

    /// Run `f` in one transaction and commit it if `f` succeeds and this node still
    /// holds its partition (else [`Error::Fenced`] and nothing is written).
    pub fn write<T>(&mut self, f: impl FnOnce(&mut PgTables<'_>) -> R<T>) -> R<T> {
        let out = self.write_fenced(f);
        if out.as_ref().err() == Some(&Error::Fenced)
            && let Fencing::Cluster(p) = &self.fencing
        {
            p.count_fenced();
        }
        out
    }

    /// [`Postgres::write`] without the count of fenced commits.
    fn write_fenced<T>(&mut self, f: impl FnOnce(&mut PgTables<'_>) -> R<T>) -> R<T> {
        let Postgres {
            client,
            fencing,
            statements,
            executed,
            ..
        } = self;
        let mut txn = client.transaction().map_err(pg_error)?;
        let check = statements.get(&mut txn, cluster::FENCE)?;
        *executed += 1;
        let partitions = match fencing {
            Fencing::Node(held) => {
                *executed += 1;
                cluster::fence(&mut txn, &check, held)?;
                0
            }
            Fencing::Cluster(p) => p.partitions(),
        };
        let mut tables = PgTables {
            txn: RefCell::new(txn),
            statements: RefCell::new(statements),
            executed: std::cell::Cell::new(0),
            batch: RefCell::new(Batch::default()),
            partitions,
            touched: RefCell::new(BTreeSet::new()),
        };
        let out = f(&mut tables).and_then(|out| tables.flush().map(|()| out));
        *executed += tables.executed.get();
        let out = out?;
        let mut txn = tables.txn.into_inner();
        if let Fencing::Cluster(p) = fencing {
            // Every partition written, at the epoch this node holds it at; one it does not
            // hold (handed over since the work was taken) fences the whole commit.
            let held = p.held();
            let touched = tables.touched.into_inner();
            let want: Option<cluster::Held> = touched
                .iter()
                .map(|q| held.get(q).map(|e| (*q, *e)))
                .collect();
            let fenced = match want {
                None => Err(Error::Fenced),
                Some(want) if want.is_empty() => Ok(()),
                Some(want) => {
                    *executed += 1;
                    cluster::fence(&mut txn, &check, &want)
                }
            };
            fenced?;
        }
        txn.commit().map_err(pg_error)?;
        *executed += 1;
        Ok(out)
    }
}

/// The logical tables inside one PostgreSQL transaction.
pub struct PgTables<'a> {
    txn: RefCell<Transaction<'a>>,
    statements: RefCell<&'a mut Statements>,
    executed: std::cell::Cell<u64>,
    /// Writes of the hot tables held until [`PgTables::flush`] (see `batch.rs`).
    batch: RefCell<Batch>,
    /// The cluster's partition count (0 on a single node: nothing to track).
    partitions: u32,
    /// The partitions this transaction wrote to (a cluster node's commit is fenced on
    /// them).
    touched: RefCell<BTreeSet<u32>>,
}

/// Running SQL with prepared statements: the writer's transaction, a reader's snapshot.
pub(crate) trait Sql {
    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>>;
}

impl Sql for PgTables<'_> {
    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        let mut txn = self.txn.borrow_mut();
        let stmt = self.statements.borrow_mut().get(&mut *txn, sql)?;
        self.executed.set(self.executed.get() + 1);
        txn.query(&stmt, params).map_err(pg_error)
    }
}

impl PgTables<'_> {
    /// This transaction writes to the actor `key` (its partition is fenced at commit).
    fn touch(&self, key: &str) {
        if self.partitions > 0 {
            self.touched
                .borrow_mut()
                .insert(partition_of(key, self.partitions));
        }
    }

    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        self.rows(sql, params)
    }

    fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Option<Row>> {
        let mut rows = self.rows(sql, params)?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            n => Err(Error::Backend(format!("{n} rows where one was expected"))),
        }
    }

    fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<u64> {
        let mut txn = self.txn.borrow_mut();
        let stmt = self.statements.borrow_mut().get(&mut *txn, sql)?;
        self.executed.set(self.executed.get() + 1);
        txn.execute(&stmt, params).map_err(pg_error)
    }

    /// One record column of one row, decoded.
    fn record<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> R<Option<T>> {
        match self.opt(sql, params)? {
            Some(row) => Ok(Some(dec(row.get::<_, &[u8]>(0))?)),
            None => Ok(None),
        }
    }

    fn keys_with_prefix(
        &self,
        table: &str,
        column: &str,
        prefix: &str,
        max: usize,
    ) -> R<Vec<String>> {
        let sql =
            format!("SELECT {column} FROM {table} WHERE {column} >= $1 ORDER BY {column} LIMIT $2");
        Ok(self
            .query(&sql, &[&prefix, &limit(max)])?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .take_while(|k| k.starts_with(prefix))
            .collect())
    }
}

impl PgTables<'_> {
    /// Send the held writes as one statement: before COMMIT, and before a statement
    /// that reads or writes a table they touch by more than one key.
    fn flush(&self) -> R<()> {
        let (sql, params) = {
            let mut batch = self.batch.borrow_mut();
            if batch.is_empty() {
                return Ok(());
            }
            batch.take_statement()
        };
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        self.exec(&sql, &params)?;
        Ok(())
    }

    /// A statement that is not the flush writes to a held table: send what is held
    /// first, and forget the rows seen (the statement may change them).
    fn flush_to_write(&self) -> R<()> {
        self.flush()?;
        self.batch.borrow_mut().forget();
        Ok(())
    }

    /// What this transaction wrote to a row: `Some(None)` if it removed it, `None` if it
    /// did not touch it.
    fn held(&self, t: &Table, key: &[V]) -> Option<Option<Vals>> {
        self.batch.borrow().get(t, key).map(|v| v.cloned())
    }

    /// A row's value columns: held or seen before, else the server's (`sql` selects them
    /// by key), remembered.
    fn row(
        &self,
        t: &Table,
        key: &[V],
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl Fn(&Row) -> Vals,
    ) -> R<Option<Vals>> {
        if let Some(known) = self.batch.borrow().known(t, key) {
            return Ok(known);
        }
        let row = self.opt(sql, params)?.map(|r| decode(&r));
        self.batch.borrow_mut().saw(t, key.to_vec(), row.clone());
        Ok(row)
    }

    /// The highest seq of the actor's mailbox on the server, remembered.
    fn stored_mail_max(&self, key: &str) -> R<Option<i64>> {
        if let Some(max) = self.batch.borrow().mail_max(key) {
            return Ok(max);
        }
        let max = self
            .opt("SELECT max(seq) FROM mailbox WHERE key = $1", &[&key])?
            .and_then(|r| r.get::<_, Option<i64>>(0));
        self.batch.borrow_mut().saw_mail_max(key.to_owned(), max);
        Ok(max)
    }

    /// The highest seq of the actor's mailbox, leaving out `gone` (taken by this
    /// transaction): the remembered maximum unless it was taken.
    fn mail_max_without(&self, key: &str, gone: &[i64]) -> R<Option<i64>> {
        match self.stored_mail_max(key)? {
            Some(max) if gone.contains(&max) => Ok(self
                .opt(
                    "SELECT max(seq) FROM mailbox WHERE key = $1 AND NOT (seq = ANY($2::int8[]))",
                    &[&key, &gone],
                )?
                .and_then(|r| r.get::<_, Option<i64>>(0))),
            max => Ok(max),
        }
    }

    /// A row read, then removed with the batch.
    fn take(
        &self,
        t: &Table,
        key: Vec<V>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl Fn(&Row) -> Vals,
    ) -> R<Option<Vals>> {
        let row = self.row(t, &key, sql, params, decode)?;
        if row.is_some() {
            self.batch.borrow_mut().remove(t, key);
        }
        Ok(row)
    }

    fn put(&self, t: &Table, key: Vec<V>, vals: Vals) {
        self.batch.borrow_mut().put(t, key, vals);
    }

    fn remove(&self, t: &Table, key: Vec<V>) {
        self.batch.borrow_mut().remove(t, key);
    }

    /// The held seqs of an actor's mailbox: those put, those removed.
    fn held_mail(&self, key: &str) -> (Vec<i64>, Vec<i64>) {
        let batch = self.batch.borrow();
        let prefix = [V::T(key.to_owned())];
        let (mut put, mut gone) = (Vec::new(), Vec::new());
        for (k, v) in batch.with_prefix(&MAILBOX, &prefix) {
            match v {
                Some(_) => put.push(k[1].int()),
                None => gone.push(k[1].int()),
            }
        }
        (put, gone)
    }
}

fn t(s: &str) -> V {
    V::T(s.to_owned())
}

fn bytes_col(r: &Row) -> Vals {
    vec![V::B(r.get(0))]
}

fn int_bytes_cols(r: &Row) -> Vals {
    vec![V::I(r.get(0)), V::B(r.get(1))]
}

fn record_of<T: DeserializeOwned>(vals: Option<Vals>, col: usize) -> R<Option<T>> {
    vals.map(|v| dec(v[col].as_bytes())).transpose()
}

impl PgTables<'_> {
    /// Forget the slices the actor's state points at, if it does.
    fn drop_ref(&self, key: &str) -> R<()> {
        if let Some(row) = self.opt(
            "DELETE FROM state_refs WHERE key = $1 RETURNING id",
            &[&key],
        )? {
            let id: i64 = row.get(0);
            self.exec("DELETE FROM state_slices WHERE id = $1", &[&id])?;
        }
        Ok(())
    }
}

/// An actor's state: its one value, or its slices put together.
pub(crate) fn read_state(c: &impl Sql, key: &str) -> R<Option<Vec<u8>>> {
    if let Some(row) = c
        .rows("SELECT state FROM states WHERE key = $1", &[&key])?
        .first()
    {
        return Ok(Some(row.get(0)));
    }
    let refs = c.rows(
        "SELECT id, len, slices FROM state_refs WHERE key = $1",
        &[&key],
    )?;
    let Some(r) = refs.first() else {
        return Ok(None);
    };
    let (id, len, slices): (i64, i64, i32) = (r.get(0), r.get(1), r.get(2));
    let rows = c.rows(
        "SELECT bytes FROM state_slices WHERE id = $1 ORDER BY index",
        &[&id],
    )?;
    if rows.len() != slices as usize {
        return Err(Error::Corrupt(format!("state of {key}: slices missing")));
    }
    let mut state = Vec::with_capacity(unbig(len) as usize);
    for row in &rows {
        state.extend_from_slice(row.get::<_, &[u8]>(0));
    }
    Ok(Some(state))
}

impl Tables for PgTables<'_> {
    fn actor(&self, key: &str) -> R<Option<ActorMeta>> {
        let row = self.row(
            &ACTORS,
            &[t(key)],
            "SELECT meta FROM actors WHERE key = $1",
            &[&key],
            bytes_col,
        )?;
        record_of(row, 0)
    }

    fn put_actor(&mut self, key: &str, meta: &ActorMeta) -> R<()> {
        self.touch(key);
        self.put(&ACTORS, vec![t(key)], vec![V::B(enc(meta))]);
        Ok(())
    }

    fn remove_actor(&mut self, key: &str) -> R<()> {
        self.touch(key);
        self.remove(&ACTORS, vec![t(key)]);
        Ok(())
    }

    fn actor_keys(&self, prefix: &str, max: usize) -> R<Vec<String>> {
        self.flush()?;
        self.keys_with_prefix("actors", "key", prefix, max)
    }

    fn state(&self, key: &str) -> R<Option<Vec<u8>>> {
        if let Some(Some(vals)) = self.held(&STATES, &[t(key)]) {
            return Ok(vals.into_iter().next().map(V::bytes));
        }
        self.flush()?;
        read_state(self, key)
    }

    /// The state row goes with the batch; so does the large state it replaces, if any.
    fn put_state(&mut self, key: &str, state: &[u8]) -> R<()> {
        self.touch(key);
        let mut batch = self.batch.borrow_mut();
        batch.drop_ref(key);
        batch.put(&STATES, vec![t(key)], vec![V::B(state.to_vec())]);
        Ok(())
    }

    /// The actor's state becomes the staged slices (they stay where they are: the
    /// commit writes one small row, however large the state).
    fn put_state_ref(&mut self, key: &str, r: StateRef) -> R<()> {
        self.touch(key);
        self.flush_to_write()?;
        let id = slices_id(r.id);
        let count: i64 = self
            .opt("SELECT count(*) FROM state_slices WHERE id = $1", &[&id])?
            .map_or(0, |row| row.get(0));
        if count != i64::from(r.slices) {
            return Err(Error::Corrupt(format!("state slices {} incomplete", r.id)));
        }
        self.drop_ref(key)?;
        self.exec("DELETE FROM states WHERE key = $1", &[&key])?;
        self.exec(
            "INSERT INTO state_refs (key, id, len, slices) VALUES ($1, $2, $3, $4)",
            &[&key, &id, &big(r.len), &(r.slices as i32)],
        )?;
        Ok(())
    }

    fn remove_state(&mut self, key: &str) -> R<()> {
        self.touch(key);
        self.flush_to_write()?;
        self.exec("DELETE FROM states WHERE key = $1", &[&key])?;
        self.drop_ref(key)
    }

    fn stage_slice(&mut self, id: u64, index: u32, bytes: &[u8]) -> R<()> {
        self.exec(
            "INSERT INTO state_slices (id, index, bytes) VALUES ($1, $2, $3) ON CONFLICT (id, index) DO UPDATE SET bytes = EXCLUDED.bytes",
            &[&slices_id(id), &(index as i32), &bytes],
        )?;
        Ok(())
    }

    /// A no-op when a state points at the slices (its turn's commit took them).
    fn unstage(&mut self, id: u64) -> R<()> {
        self.flush_to_write()?;
        self.exec(
            "DELETE FROM state_slices WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM state_refs WHERE id = $1)",
            &[&slices_id(id)],
        )?;
        Ok(())
    }

    /// The server's rows without those this transaction removed, and those it put.
    fn last_seq(&self, key: &str) -> R<Option<u64>> {
        let (put, gone) = self.held_mail(key);
        let stored = self.mail_max_without(key, &gone)?;
        Ok(put.into_iter().chain(stored).max().map(unbig))
    }

    fn has_mail(&self, key: &str) -> R<bool> {
        let (put, gone) = self.held_mail(key);
        Ok(!put.is_empty() || self.mail_max_without(key, &gone)?.is_some())
    }

    /// Two statements for the whole batch: the actors' rows with their mailbox's highest
    /// seq, and the messages its turns take.
    fn prefetch(&self, actors: &[&str], mail: &[(&str, u64)]) -> R<()> {
        let mut keys: Vec<String> = {
            let batch = self.batch.borrow();
            actors
                .iter()
                .filter(|k| batch.known(&ACTORS, &[t(k)]).is_none())
                .map(|k| (*k).to_owned())
                .collect()
        };
        keys.sort();
        keys.dedup();
        if !keys.is_empty() {
            let rows = self.query(
                "SELECT u.k, a.meta, (SELECT max(seq) FROM mailbox m WHERE m.key = u.k COLLATE \"C\") \
                 FROM unnest($1::text[]) AS u(k) LEFT JOIN actors a ON a.key = u.k COLLATE \"C\"",
                &[&keys],
            )?;
            let mut batch = self.batch.borrow_mut();
            for r in rows {
                let key: String = r.get(0);
                let meta: Option<Vec<u8>> = r.get(1);
                batch.saw(&ACTORS, vec![t(&key)], meta.map(|m| vec![V::B(m)]));
                batch.saw_mail_max(key, r.get(2));
            }
        }
        let wanted: Vec<(&str, u64)> = {
            let batch = self.batch.borrow();
            mail.iter()
                .filter(|(k, s)| batch.known(&MAILBOX, &[t(k), V::I(big(*s))]).is_none())
                .copied()
                .collect()
        };
        if !wanted.is_empty() {
            let ks: Vec<&str> = wanted.iter().map(|(k, _)| *k).collect();
            let ss: Vec<i64> = wanted.iter().map(|(_, s)| big(*s)).collect();
            let rows = self.query(
                "SELECT m.key, m.seq, m.envelope FROM mailbox m \
                 JOIN unnest($1::text[], $2::int8[]) AS u(k, s) ON m.key = u.k COLLATE \"C\" AND m.seq = u.s",
                &[&ks, &ss],
            )?;
            let mut batch = self.batch.borrow_mut();
            for (k, s) in &wanted {
                batch.saw(&MAILBOX, vec![t(k), V::I(big(*s))], None);
            }
            for r in rows {
                let key: String = r.get(0);
                batch.saw(
                    &MAILBOX,
                    vec![V::T(key), V::I(r.get(1))],
                    Some(vec![V::B(r.get(2))]),
                );
            }
        }
        Ok(())
    }

    fn put_mail(&mut self, key: &str, seq: u64, env: &Envelope) -> R<()> {
        self.touch(key);
        self.put(&MAILBOX, vec![t(key), V::I(big(seq))], vec![V::B(enc(env))]);
        Ok(())
    }

    fn take_mail(&mut self, key: &str, seq: u64) -> R<Option<Envelope>> {
        self.touch(key);
        let row = self.take(
            &MAILBOX,
            vec![t(key), V::I(big(seq))],
            "SELECT envelope FROM mailbox WHERE key = $1 AND seq = $2",
            &[&key, &big(seq)],
            bytes_col,
        )?;
        record_of(row, 0)
    }

    fn mail(&self, key: &str) -> R<Vec<(u64, Envelope)>> {
        self.flush()?;
        self.query(
            "SELECT seq, envelope FROM mailbox WHERE key = $1 ORDER BY seq",
            &[&key],
        )?
        .iter()
        .map(|r| Ok((unbig(r.get(0)), dec(r.get::<_, &[u8]>(1))?)))
        .collect()
    }

    fn clear_mail(&mut self, key: &str) -> R<()> {
        self.touch(key);
        self.flush_to_write()?;
        self.exec("DELETE FROM mailbox WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn put_inbox(&mut self, key: &str, env: &Envelope) -> R<()> {
        let partition = partition_of(key, self.partitions.max(1)) as i32;
        self.exec(
            "INSERT INTO inbox (partition, key, envelope) VALUES ($1, $2, $3)",
            &[&partition, &key, &enc(env)],
        )?;
        Ok(())
    }

    fn take_inbox(&mut self, id: u64) -> R<Option<(String, Envelope)>> {
        let Some(row) = self.opt(
            "DELETE FROM inbox WHERE id = $1 RETURNING key, envelope",
            &[&big(id)],
        )?
        else {
            return Ok(None);
        };
        Ok(Some((row.get(0), dec(row.get::<_, &[u8]>(1))?)))
    }

    fn put_dead(&mut self, key: &str, seq: u64, dl: &DeadLetter) -> R<()> {
        self.touch(key);
        self.put(&DEAD, vec![t(key), V::I(big(seq))], vec![V::B(enc(dl))]);
        Ok(())
    }

    fn take_dead(&mut self, key: &str, seq: u64) -> R<Option<DeadLetter>> {
        self.touch(key);
        let row = self.take(
            &DEAD,
            vec![t(key), V::I(big(seq))],
            "SELECT letter FROM dead_letters WHERE key = $1 AND seq = $2",
            &[&key, &big(seq)],
            bytes_col,
        )?;
        record_of(row, 0)
    }

    fn clear_dead(&mut self, key: &str) -> R<()> {
        self.touch(key);
        self.flush_to_write()?;
        self.exec("DELETE FROM dead_letters WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn put_history(
        &mut self,
        key: &str,
        _meta: &mut ActorMeta,
        seq: u64,
        rec: &TurnRecord,
        state: Option<&[u8]>,
        keep: Retention,
    ) -> R<()> {
        self.touch(key);
        let at = |seq| vec![t(key), V::I(big(seq))];
        self.put(&HISTORY, at(seq), vec![V::B(enc(rec))]);
        if let Some(state) = state {
            self.put(&HISTORY_STATES, at(seq), vec![V::B(state.to_vec())]);
        }
        if let Some(old) = seq.checked_sub(keep.states) {
            self.remove(&HISTORY_STATES, at(old));
        }
        if let Some(old) = seq.checked_sub(keep.turns) {
            self.remove(&HISTORY, at(old));
            self.remove(&HISTORY_STATES, at(old));
        }
        Ok(())
    }

    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>> {
        self.flush()?;
        history_of(self, key, before, max)
    }

    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>> {
        let row = self.row(
            &HISTORY_STATES,
            &[t(key), V::I(big(seq))],
            "SELECT state FROM history_states WHERE key = $1 AND seq = $2",
            &[&key, &big(seq)],
            bytes_col,
        )?;
        Ok(row.and_then(|vals| vals.into_iter().next().map(V::bytes)))
    }

    fn clear_history(&mut self, key: &str) -> R<()> {
        self.touch(key);
        self.flush_to_write()?;
        self.exec("DELETE FROM history WHERE key = $1", &[&key])?;
        self.exec("DELETE FROM history_states WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn request(&self, rid: u128) -> R<Option<RequestRecord>> {
        let row = self.row(
            &REQUESTS,
            &[V::B(id(rid))],
            "SELECT record FROM requests WHERE id = $1",
            &[&id(rid)],
            bytes_col,
        )?;
        record_of(row, 0)
    }

    fn put_request(&mut self, rid: u128, rec: &RequestRecord) -> R<()> {
        self.put(&REQUESTS, vec![V::B(id(rid))], vec![V::B(enc(rec))]);
        Ok(())
    }

    fn remove_request(&mut self, rid: u128) -> R<()> {
        self.remove(&REQUESTS, vec![V::B(id(rid))]);
        Ok(())
    }

    fn requests_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, RequestRecord)>> {
        self.flush()?;
        self.query(
            "SELECT id, record FROM requests WHERE id >= $1 ORDER BY id LIMIT $2",
            &[&id(cursor), &limit(max)],
        )?
        .iter()
        .map(|r| Ok((unid(r.get(0))?, dec(r.get::<_, &[u8]>(1))?)))
        .collect()
    }

    fn module(&self, key: &str) -> R<Option<ModuleRecord>> {
        self.record("SELECT record FROM modules WHERE key = $1", &[&key])
    }

    fn put_module(&mut self, key: &str, rec: &ModuleRecord) -> R<()> {
        self.exec(
            "INSERT INTO modules (key, record) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record",
            &[&key, &enc(rec)],
        )?;
        Ok(())
    }

    fn remove_module(&mut self, key: &str) -> R<bool> {
        Ok(self.exec("DELETE FROM modules WHERE key = $1", &[&key])? > 0)
    }

    fn module_keys(&self, prefix: &str) -> R<Vec<String>> {
        self.keys_with_prefix("modules", "key", prefix, usize::MAX)
    }

    fn has_blob(&self, digest: &str) -> R<bool> {
        Ok(self
            .opt("SELECT 1 FROM module_bytes WHERE digest = $1", &[&digest])?
            .is_some())
    }

    fn put_blob(&mut self, digest: &str, bytes: &[u8]) -> R<()> {
        self.exec(
            "INSERT INTO module_bytes (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
            &[&digest, &bytes],
        )?;
        Ok(())
    }

    fn timer_due(&self, key: &str, name: &str) -> R<Option<UnixMs>> {
        let row = self.row(
            &TIMERS,
            &[t(key), t(name)],
            "SELECT due, payload FROM timers WHERE key = $1 AND name = $2",
            &[&key, &name],
            int_bytes_cols,
        )?;
        Ok(row.map(|r| unbig(r[0].int())))
    }

    fn timer_pending(&self, due: UnixMs, key: &str, name: &str) -> R<bool> {
        Ok(self.timer_due(key, name)? == Some(due))
    }

    fn put_timer(&mut self, due: UnixMs, key: &str, name: &str, payload: &[u8]) -> R<()> {
        self.touch(key);
        self.put(
            &TIMERS,
            vec![t(key), t(name)],
            vec![V::I(big(due)), V::B(payload.to_vec())],
        );
        Ok(())
    }

    /// The timer's payload if it is set for `due` (then it goes with the batch).
    fn take_timer(&mut self, due: UnixMs, key: &str, name: &str) -> R<Option<Vec<u8>>> {
        self.touch(key);
        let row = self.row(
            &TIMERS,
            &[t(key), t(name)],
            "SELECT due, payload FROM timers WHERE key = $1 AND name = $2",
            &[&key, &name],
            int_bytes_cols,
        )?;
        match row {
            Some(mut r) if r[0].int() == big(due) => {
                self.remove(&TIMERS, vec![t(key), t(name)]);
                Ok(Some(r.swap_remove(1).bytes()))
            }
            _ => Ok(None),
        }
    }

    fn timer_names(&self, key: &str) -> R<Vec<String>> {
        self.flush()?;
        Ok(self
            .query(
                "SELECT name FROM timers WHERE key = $1 ORDER BY name",
                &[&key],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn due_timers(&self, now: UnixMs, max: usize) -> R<Vec<TimerKey>> {
        self.flush()?;
        Ok(self
            .query(
                "SELECT due, key, name FROM timers WHERE due <= $1 ORDER BY due, key, name LIMIT $2",
                &[&big(now), &limit(max)],
            )?
            .iter()
            .map(|r| (unbig(r.get(0)), r.get(1), r.get(2)))
            .collect())
    }

    fn outbox(&self, oid: u128) -> R<Option<OutboxEntry>> {
        let row = self.row(
            &OUTBOX,
            &[V::B(id(oid))],
            "SELECT due, entry FROM outbox WHERE id = $1",
            &[&id(oid)],
            int_bytes_cols,
        )?;
        record_of(row, 1)
    }

    fn put_outbox(&mut self, oid: u128, entry: &OutboxEntry) -> R<()> {
        self.put(
            &OUTBOX,
            vec![V::B(id(oid))],
            vec![V::I(big(entry.due_ms)), V::B(enc(entry))],
        );
        Ok(())
    }

    fn take_outbox(&mut self, oid: u128) -> R<Option<OutboxEntry>> {
        let row = self.take(
            &OUTBOX,
            vec![V::B(id(oid))],
            "SELECT due, entry FROM outbox WHERE id = $1",
            &[&id(oid)],
            int_bytes_cols,
        )?;
        record_of(row, 1)
    }

    fn outbox_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, OutboxEntry)>> {
        self.flush()?;
        self.query(
            "SELECT id, entry FROM outbox WHERE id >= $1 ORDER BY id LIMIT $2",
            &[&id(cursor), &limit(max)],
        )?
        .iter()
        .map(|r| Ok((unid(r.get(0))?, dec(r.get::<_, &[u8]>(1))?)))
        .collect()
    }

    fn http_pending(&self, key: &str, call: &str) -> R<Option<u128>> {
        let row = self.row(
            &HTTP_PENDING,
            &[t(key), t(call)],
            "SELECT id FROM http_pending WHERE key = $1 AND call = $2",
            &[&key, &call],
            bytes_col,
        )?;
        row.map(|r| unid(r[0].as_bytes())).transpose()
    }

    fn put_http_pending(&mut self, key: &str, call: &str, oid: u128) -> R<()> {
        self.touch(key);
        self.put(&HTTP_PENDING, vec![t(key), t(call)], vec![V::B(id(oid))]);
        Ok(())
    }

    fn remove_http_pending(&mut self, key: &str, call: &str) -> R<()> {
        self.touch(key);
        self.remove(&HTTP_PENDING, vec![t(key), t(call)]);
        Ok(())
    }

    fn clear_http_pending(&mut self, key: &str) -> R<()> {
        self.touch(key);
        self.flush_to_write()?;
        self.exec("DELETE FROM http_pending WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn idempotency(&self, tenant: &str, key: &str) -> R<Option<IdempotencyRecord>> {
        let row = self.row(
            &IDEMPOTENCY,
            &[t(tenant), t(key)],
            "SELECT expires, record FROM idempotency WHERE tenant = $1 AND key = $2",
            &[&tenant, &key],
            int_bytes_cols,
        )?;
        record_of(row, 1)
    }

    fn put_idempotency(&mut self, tenant: &str, key: &str, rec: &IdempotencyRecord) -> R<()> {
        self.put(
            &IDEMPOTENCY,
            vec![t(tenant), t(key)],
            vec![V::I(big(rec.expires_ms)), V::B(enc(rec))],
        );
        Ok(())
    }

    fn remove_idempotency(&mut self, tenant: &str, key: &str) -> R<()> {
        self.remove(&IDEMPOTENCY, vec![t(tenant), t(key)]);
        Ok(())
    }

    fn expiring(&self, before: UnixMs, max: usize) -> R<Vec<(UnixMs, String, String)>> {
        self.flush()?;
        Ok(self
            .query(
                "SELECT expires, tenant, key FROM idempotency WHERE expires < $1 ORDER BY expires, tenant, key LIMIT $2",
                &[&big(before), &limit(max)],
            )?
            .iter()
            .map(|r| (unbig(r.get(0)), r.get(1), r.get(2)))
            .collect())
    }

    /// The expiry is a column of the record's row: nothing apart to forget.
    fn forget_expiry(&mut self, _: UnixMs, _: &str, _: &str) -> R<()> {
        Ok(())
    }

    fn idempotency_keys(&self, tenant: &str, max: usize) -> R<Vec<(String, IdempotencyRecord)>> {
        self.flush()?;
        self.query(
            "SELECT key, record FROM idempotency WHERE tenant = $1 ORDER BY key LIMIT $2",
            &[&tenant, &limit(max)],
        )?
        .iter()
        .map(|r| Ok((r.get(0), dec(r.get::<_, &[u8]>(1))?)))
        .collect()
    }

    fn tenant(&self, name: &str) -> R<Option<TenantRecord>> {
        self.record("SELECT record FROM tenants WHERE name = $1", &[&name])
    }

    fn put_tenant(&mut self, name: &str, rec: &TenantRecord) -> R<()> {
        self.exec(
            "INSERT INTO tenants (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
            &[&name, &enc(rec)],
        )?;
        Ok(())
    }

    fn take_tenant(&mut self, name: &str) -> R<Option<TenantRecord>> {
        self.record(
            "DELETE FROM tenants WHERE name = $1 RETURNING record",
            &[&name],
        )
    }

    fn tenant_name(&self, tid: &str) -> R<Option<String>> {
        Ok(self
            .opt("SELECT name FROM tenant_names WHERE id = $1", &[&tid])?
            .map(|r| r.get(0)))
    }

    fn put_tenant_name(&mut self, tid: &str, name: &str) -> R<()> {
        self.exec(
            "INSERT INTO tenant_names (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
            &[&tid, &name],
        )?;
        Ok(())
    }

    fn remove_tenant_name(&mut self, tid: &str) -> R<()> {
        self.exec("DELETE FROM tenant_names WHERE id = $1", &[&tid])?;
        Ok(())
    }

    fn actor_count(&self, tenant: &str) -> R<u64> {
        let row = self.row(
            &ACTOR_COUNTS,
            &[t(tenant)],
            "SELECT count FROM actor_counts WHERE tenant = $1",
            &[&tenant],
            |r| vec![V::I(r.get(0))],
        )?;
        Ok(row.map_or(0, |r| unbig(r[0].int())))
    }

    fn put_actor_count(&mut self, tenant: &str, count: u64) -> R<()> {
        self.put(&ACTOR_COUNTS, vec![t(tenant)], vec![V::I(big(count))]);
        Ok(())
    }

    fn remove_actor_count(&mut self, tenant: &str) -> R<()> {
        self.remove(&ACTOR_COUNTS, vec![t(tenant)]);
        Ok(())
    }

    fn api_key(&self, kid: &str) -> R<Option<KeyRecord>> {
        self.record("SELECT record FROM api_keys WHERE id = $1", &[&kid])
    }

    fn put_api_key(&mut self, kid: &str, rec: &KeyRecord) -> R<()> {
        self.exec(
            "INSERT INTO api_keys (id, record) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
            &[&kid, &enc(rec)],
        )?;
        Ok(())
    }

    fn remove_api_key(&mut self, kid: &str) -> R<()> {
        self.exec("DELETE FROM api_keys WHERE id = $1", &[&kid])?;
        Ok(())
    }

    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>> {
        self.query("SELECT id, record FROM api_keys ORDER BY id", &[])?
            .iter()
            .map(|r| Ok((r.get(0), dec(r.get::<_, &[u8]>(1))?)))
            .collect()
    }

    fn meta(&self, key: &str) -> R<Option<Vec<u8>>> {
        Ok(self
            .opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> R<()> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn remove_meta(&mut self, key: &str) -> R<()> {
        self.exec("DELETE FROM meta WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn purge_job(&self, key: &str) -> R<Option<PurgeJob>> {
        self.record("SELECT value FROM meta WHERE key = $1", &[&key])
    }

    fn put_purge_job(&mut self, key: &str, job: &PurgeJob) -> R<()> {
        self.put_meta(key, &enc(job))
    }
}

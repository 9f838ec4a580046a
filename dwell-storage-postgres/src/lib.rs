//! The storage contract ([`dwell_storage::Tables`]) on PostgreSQL.
//! Long because it is the whole contract in SQL: one short method per table operation.
//!
//! [`Postgres::connect`] opens a connection and applies the embedded schema
//! (`schema.sql`, idempotent); [`Postgres::write`] runs one transaction through
//! [`PgTables`] and commits it — a backend's writer calls it once per batch, so a batch is
//! one transaction and one commit, and nothing of it is visible before the commit.
//! Records are stored as the redb file stores them (a schema byte and MessagePack);
//! keys are columns, text keys `COLLATE "C"` so scans come in the same order as redb's.
//! Every commit first checks that this node still holds its partition's epoch (one node
//! owns every partition today); a node that lost it gets [`Error::Fenced`].
//!
//! [`PgReads`] is the read side ([`dwell_storage::Reads`]). `dwell serve --store
//! postgres://…` runs on both; the conformance suite runs in this crate's tests.

mod reads;
pub use reads::PgReads;

use std::cell::RefCell;

use dwell_storage::{Error, StateRef, Tables, TimerKey};
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
    /// The partition this node writes and the epoch it holds it at.
    partition: i32,
    epoch: i64,
    statements: Statements,
    /// Statements executed by writes so far (BEGIN and COMMIT included).
    executed: u64,
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

impl Postgres {
    /// Connect (`postgres://…` or `host=… port=…`), apply the schema, and take
    /// partition 0 (one node owns every partition today): its epoch goes up by one, so a
    /// node that held it before is fenced at its next commit.
    pub fn connect(url: &str, owner: &str) -> R<Postgres> {
        let mut client = Client::connect(url, NoTls).map_err(pg_error)?;
        client.batch_execute(SCHEMA).map_err(pg_error)?;
        let row = client
            .query_one(
                "UPDATE partitions SET epoch = epoch + 1, owner = $1 WHERE partition = 0 RETURNING epoch",
                &[&owner],
            )
            .map_err(pg_error)?;
        Ok(Postgres {
            client,
            partition: 0,
            epoch: row.get(0),
            statements: Statements::default(),
            executed: 0,
        })
    }

    /// Connect again after the connection was lost, keeping the partition epoch this
    /// node claimed: if another node took the partition meanwhile, the next write is
    /// [`Error::Fenced`].
    pub fn resume(&self, url: &str) -> R<Postgres> {
        let client = Client::connect(url, NoTls).map_err(pg_error)?;
        Ok(Postgres {
            client,
            partition: self.partition,
            epoch: self.epoch,
            statements: Statements::default(),
            executed: self.executed,
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
    pub fn executed(&self) -> u64 {
        self.executed
    }

    /// Run `f` in one transaction and commit it if `f` succeeds and this node still
    /// holds its partition (else [`Error::Fenced`] and nothing is written).
    pub fn write<T>(&mut self, f: impl FnOnce(&mut PgTables<'_>) -> R<T>) -> R<T> {
        let Postgres {
            client,
            partition,
            epoch,
            statements,
            executed,
        } = self;
        let mut txn = client.transaction().map_err(pg_error)?;
        let check = statements.get(
            &mut txn,
            "SELECT epoch FROM partitions WHERE partition = $1 FOR SHARE",
        )?;
        let held: i64 = txn
            .query_one(&check, &[partition])
            .map_err(pg_error)?
            .get(0);
        *executed += 2;
        if held != *epoch {
            return Err(Error::Fenced);
        }
        let mut tables = PgTables {
            txn: RefCell::new(txn),
            statements: RefCell::new(statements),
            executed: std::cell::Cell::new(0),
        };
        let out = f(&mut tables);
        *executed += tables.executed.get();
        let out = out?;
        tables.txn.into_inner().commit().map_err(pg_error)?;
        *executed += 1;
        Ok(out)
    }
}

/// The logical tables inside one PostgreSQL transaction.
pub struct PgTables<'a> {
    txn: RefCell<Transaction<'a>>,
    statements: RefCell<&'a mut Statements>,
    executed: std::cell::Cell<u64>,
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
        self.record("SELECT meta FROM actors WHERE key = $1", &[&key])
    }

    fn put_actor(&mut self, key: &str, meta: &ActorMeta) -> R<()> {
        self.exec(
            "INSERT INTO actors (key, meta) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET meta = EXCLUDED.meta",
            &[&key, &enc(meta)],
        )?;
        Ok(())
    }

    fn remove_actor(&mut self, key: &str) -> R<()> {
        self.exec("DELETE FROM actors WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn actor_keys(&self, prefix: &str, max: usize) -> R<Vec<String>> {
        self.keys_with_prefix("actors", "key", prefix, max)
    }

    fn state(&self, key: &str) -> R<Option<Vec<u8>>> {
        read_state(self, key)
    }

    fn put_state(&mut self, key: &str, state: &[u8]) -> R<()> {
        self.drop_ref(key)?;
        self.exec(
            "INSERT INTO states (key, state) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state",
            &[&key, &state],
        )?;
        Ok(())
    }

    /// The actor's state becomes the staged slices (they stay where they are: the
    /// commit writes one small row, however large the state).
    fn put_state_ref(&mut self, key: &str, r: StateRef) -> R<()> {
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
        self.exec(
            "DELETE FROM state_slices WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM state_refs WHERE id = $1)",
            &[&slices_id(id)],
        )?;
        Ok(())
    }

    fn last_seq(&self, key: &str) -> R<Option<u64>> {
        Ok(self
            .opt("SELECT max(seq) FROM mailbox WHERE key = $1", &[&key])?
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(unbig))
    }

    fn has_mail(&self, key: &str) -> R<bool> {
        Ok(self
            .opt("SELECT 1 FROM mailbox WHERE key = $1 LIMIT 1", &[&key])?
            .is_some())
    }

    fn put_mail(&mut self, key: &str, seq: u64, env: &Envelope) -> R<()> {
        self.exec(
            "INSERT INTO mailbox (key, seq, envelope) VALUES ($1, $2, $3) ON CONFLICT (key, seq) DO UPDATE SET envelope = EXCLUDED.envelope",
            &[&key, &big(seq), &enc(env)],
        )?;
        Ok(())
    }

    fn take_mail(&mut self, key: &str, seq: u64) -> R<Option<Envelope>> {
        self.record(
            "DELETE FROM mailbox WHERE key = $1 AND seq = $2 RETURNING envelope",
            &[&key, &big(seq)],
        )
    }

    fn mail(&self, key: &str) -> R<Vec<(u64, Envelope)>> {
        self.query(
            "SELECT seq, envelope FROM mailbox WHERE key = $1 ORDER BY seq",
            &[&key],
        )?
        .iter()
        .map(|r| Ok((unbig(r.get(0)), dec(r.get::<_, &[u8]>(1))?)))
        .collect()
    }

    fn clear_mail(&mut self, key: &str) -> R<()> {
        self.exec("DELETE FROM mailbox WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn put_dead(&mut self, key: &str, seq: u64, dl: &DeadLetter) -> R<()> {
        self.exec(
            "INSERT INTO dead_letters (key, seq, letter) VALUES ($1, $2, $3) ON CONFLICT (key, seq) DO UPDATE SET letter = EXCLUDED.letter",
            &[&key, &big(seq), &enc(dl)],
        )?;
        Ok(())
    }

    fn take_dead(&mut self, key: &str, seq: u64) -> R<Option<DeadLetter>> {
        self.record(
            "DELETE FROM dead_letters WHERE key = $1 AND seq = $2 RETURNING letter",
            &[&key, &big(seq)],
        )
    }

    fn clear_dead(&mut self, key: &str) -> R<()> {
        self.exec("DELETE FROM dead_letters WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn request(&self, rid: u128) -> R<Option<RequestRecord>> {
        self.record("SELECT record FROM requests WHERE id = $1", &[&id(rid)])
    }

    fn put_request(&mut self, rid: u128, rec: &RequestRecord) -> R<()> {
        self.exec(
            "INSERT INTO requests (id, record) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
            &[&id(rid), &enc(rec)],
        )?;
        Ok(())
    }

    fn remove_request(&mut self, rid: u128) -> R<()> {
        self.exec("DELETE FROM requests WHERE id = $1", &[&id(rid)])?;
        Ok(())
    }

    fn requests_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, RequestRecord)>> {
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
        Ok(self
            .opt(
                "SELECT due FROM timers WHERE key = $1 AND name = $2",
                &[&key, &name],
            )?
            .map(|r| unbig(r.get(0))))
    }

    fn timer_pending(&self, due: UnixMs, key: &str, name: &str) -> R<bool> {
        Ok(self.timer_due(key, name)? == Some(due))
    }

    fn put_timer(&mut self, due: UnixMs, key: &str, name: &str, payload: &[u8]) -> R<()> {
        self.exec(
            "INSERT INTO timers (key, name, due, payload) VALUES ($1, $2, $3, $4) ON CONFLICT (key, name) DO UPDATE SET due = EXCLUDED.due, payload = EXCLUDED.payload",
            &[&key, &name, &big(due), &payload],
        )?;
        Ok(())
    }

    fn take_timer(&mut self, due: UnixMs, key: &str, name: &str) -> R<Option<Vec<u8>>> {
        Ok(self
            .opt(
                "DELETE FROM timers WHERE key = $1 AND name = $2 AND due = $3 RETURNING payload",
                &[&key, &name, &big(due)],
            )?
            .map(|r| r.get::<_, Vec<u8>>(0)))
    }

    fn timer_names(&self, key: &str) -> R<Vec<String>> {
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
        self.record("SELECT entry FROM outbox WHERE id = $1", &[&id(oid)])
    }

    fn put_outbox(&mut self, oid: u128, entry: &OutboxEntry) -> R<()> {
        self.exec(
            "INSERT INTO outbox (id, due, entry) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET due = EXCLUDED.due, entry = EXCLUDED.entry",
            &[&id(oid), &big(entry.due_ms), &enc(entry)],
        )?;
        Ok(())
    }

    fn take_outbox(&mut self, oid: u128) -> R<Option<OutboxEntry>> {
        self.record(
            "DELETE FROM outbox WHERE id = $1 RETURNING entry",
            &[&id(oid)],
        )
    }

    fn outbox_from(&self, cursor: u128, max: usize) -> R<Vec<(u128, OutboxEntry)>> {
        self.query(
            "SELECT id, entry FROM outbox WHERE id >= $1 ORDER BY id LIMIT $2",
            &[&id(cursor), &limit(max)],
        )?
        .iter()
        .map(|r| Ok((unid(r.get(0))?, dec(r.get::<_, &[u8]>(1))?)))
        .collect()
    }

    fn http_pending(&self, key: &str, call: &str) -> R<Option<u128>> {
        match self.opt(
            "SELECT id FROM http_pending WHERE key = $1 AND call = $2",
            &[&key, &call],
        )? {
            Some(r) => Ok(Some(unid(r.get(0))?)),
            None => Ok(None),
        }
    }

    fn put_http_pending(&mut self, key: &str, call: &str, oid: u128) -> R<()> {
        self.exec(
            "INSERT INTO http_pending (key, call, id) VALUES ($1, $2, $3) ON CONFLICT (key, call) DO UPDATE SET id = EXCLUDED.id",
            &[&key, &call, &id(oid)],
        )?;
        Ok(())
    }

    fn remove_http_pending(&mut self, key: &str, call: &str) -> R<()> {
        self.exec(
            "DELETE FROM http_pending WHERE key = $1 AND call = $2",
            &[&key, &call],
        )?;
        Ok(())
    }

    fn clear_http_pending(&mut self, key: &str) -> R<()> {
        self.exec("DELETE FROM http_pending WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn idempotency(&self, tenant: &str, key: &str) -> R<Option<IdempotencyRecord>> {
        self.record(
            "SELECT record FROM idempotency WHERE tenant = $1 AND key = $2",
            &[&tenant, &key],
        )
    }

    fn put_idempotency(&mut self, tenant: &str, key: &str, rec: &IdempotencyRecord) -> R<()> {
        self.exec(
            "INSERT INTO idempotency (tenant, key, expires, record) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, key) DO UPDATE SET expires = EXCLUDED.expires, record = EXCLUDED.record",
            &[&tenant, &key, &big(rec.expires_ms), &enc(rec)],
        )?;
        Ok(())
    }

    fn remove_idempotency(&mut self, tenant: &str, key: &str) -> R<()> {
        self.exec(
            "DELETE FROM idempotency WHERE tenant = $1 AND key = $2",
            &[&tenant, &key],
        )?;
        Ok(())
    }

    fn expiring(&self, before: UnixMs, max: usize) -> R<Vec<(UnixMs, String, String)>> {
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
        Ok(self
            .opt(
                "SELECT count FROM actor_counts WHERE tenant = $1",
                &[&tenant],
            )?
            .map_or(0, |r| unbig(r.get(0))))
    }

    fn put_actor_count(&mut self, tenant: &str, count: u64) -> R<()> {
        self.exec(
            "INSERT INTO actor_counts (tenant, count) VALUES ($1, $2) ON CONFLICT (tenant) DO UPDATE SET count = EXCLUDED.count",
            &[&tenant, &big(count)],
        )?;
        Ok(())
    }

    fn remove_actor_count(&mut self, tenant: &str) -> R<()> {
        self.exec("DELETE FROM actor_counts WHERE tenant = $1", &[&tenant])?;
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

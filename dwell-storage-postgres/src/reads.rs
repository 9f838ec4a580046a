//! The read side of the contract ([`Reads`]) on PostgreSQL: a few reader threads, each
//! with its own connection. A call hands its query to a free reader and waits for the
//! answer, so callers on an async runtime never run the blocking client themselves.
//! Reads of several tables run in one `REPEATABLE READ` transaction: one snapshot.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use dwell_storage::{Error, Pending, Reads, TimerKey, View};
use dwell_types::UnixMs;
use dwell_types::history::TurnRecord;
use dwell_types::records::{
    ActorMeta, KeyRecord, ModuleRecord, OutboxEntry, RequestRecord, TenantRecord,
};
use std::cell::RefCell;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Transaction};

use crate::{R, Sql, Statements, big, dec, id, limit, pg_error, unbig, unid};

/// A reader's connection and the statements it has prepared.
struct Conn {
    client: Client,
    statements: Statements,
}

type Job = Box<dyn FnOnce(&mut Option<Conn>) + Send>;

/// What a read runs its statements on: the connection, or a snapshot transaction.
enum Handle<'a> {
    Client(&'a mut Client),
    Txn(Transaction<'a>),
}

/// A read in progress (see [`Sql`]).
struct Session<'a> {
    handle: RefCell<Handle<'a>>,
    statements: RefCell<&'a mut Statements>,
}

impl Sql for Session<'_> {
    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
        let mut handle = self.handle.borrow_mut();
        let mut statements = self.statements.borrow_mut();
        match &mut *handle {
            Handle::Client(c) => {
                let stmt = statements.get(*c, sql)?;
                c.query(&stmt, params).map_err(pg_error)
            }
            Handle::Txn(t) => {
                let stmt = statements.get(t, sql)?;
                t.query(&stmt, params).map_err(pg_error)
            }
        }
    }
}

/// Reads through a small pool of reader threads (see the module doc).
pub struct PgReads {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl PgReads {
    /// `threads` readers on `url`; each connects when it first reads (and again after
    /// its connection failed).
    pub fn new(url: &str, threads: usize) -> PgReads {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let url = url.to_owned();
            std::thread::Builder::new()
                .name(format!("dwell-pg-read-{i}"))
                .spawn(move || {
                    let mut conn: Option<Conn> = None;
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
                            conn = Client::connect(&url, NoTls).ok().map(|client| Conn {
                                client,
                                statements: Statements::default(),
                            });
                        }
                        job(&mut conn);
                    }
                })
                .expect("spawn a reader thread");
        }
        PgReads {
            jobs: Mutex::new(tx),
        }
    }

    /// Run `f` on a reader's connection (in a read-only snapshot if `snapshot`) and
    /// wait for its answer.
    fn run<T: Send + 'static>(
        &self,
        snapshot: bool,
        f: impl FnOnce(&Session<'_>) -> R<T> + Send + 'static,
    ) -> R<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let out = match conn.as_mut() {
                Some(Conn { client, statements }) if snapshot => client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .map_err(pg_error)
                    .and_then(|txn| {
                        let session = Session {
                            handle: RefCell::new(Handle::Txn(txn)),
                            statements: RefCell::new(statements),
                        };
                        let out = f(&session)?;
                        if let Handle::Txn(txn) = session.handle.into_inner() {
                            txn.commit().map_err(pg_error)?;
                        }
                        Ok(out)
                    }),
                Some(Conn { client, statements }) => f(&Session {
                    handle: RefCell::new(Handle::Client(client)),
                    statements: RefCell::new(statements),
                }),
                None => Err(Error::Unavailable),
            };
            if matches!(out, Err(Error::Unavailable)) {
                *conn = None;
            }
            let _ = tx.send(out);
        });
        self.jobs
            .lock()
            .map_err(|_| Error::Unavailable)?
            .send(job)
            .map_err(|_| Error::Unavailable)?;
        rx.recv().map_err(|_| Error::Unavailable)?
    }

    fn on<T: Send + 'static>(&self, f: impl FnOnce(&Session<'_>) -> R<T> + Send + 'static) -> R<T> {
        self.run(false, f)
    }

    /// `f` in one read-only snapshot.
    fn snapshot<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Session<'_>) -> R<T> + Send + 'static,
    ) -> R<T> {
        self.run(true, f)
    }
}

fn rows(c: &impl Sql, sql: &str, params: &[&(dyn ToSql + Sync)]) -> R<Vec<Row>> {
    c.rows(sql, params)
}

fn meta_of(c: &impl Sql, key: &str) -> R<Option<ActorMeta>> {
    rows(c, "SELECT meta FROM actors WHERE key = $1", &[&key])?
        .first()
        .map(|r| dec(r.get::<_, &[u8]>(0)))
        .transpose()
}

use crate::read_state as state_of;

fn one_record<T: serde::de::DeserializeOwned>(rows: Vec<Row>) -> R<Option<T>> {
    rows.first().map(|r| dec(r.get::<_, &[u8]>(0))).transpose()
}

fn first_due(rows: Vec<Row>) -> Option<UnixMs> {
    rows.first()
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(unbig)
}

impl Reads for PgReads {
    fn actor(&self, key: &str) -> R<Option<ActorMeta>> {
        let key = key.to_owned();
        self.on(move |c| meta_of(c, &key))
    }

    fn pending(&self, key: &str, max: usize) -> R<Option<Pending>> {
        let key = key.to_owned();
        self.snapshot(move |t| {
            let Some(meta) = meta_of(t, &key)? else {
                return Ok(None);
            };
            let state = state_of(t, &key)?;
            let messages = rows(
                t,
                "SELECT seq, envelope FROM mailbox WHERE key = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                &[&key, &big(meta.head_seq), &limit(max)],
            )?
            .iter()
            .map(|r| Ok((unbig(r.get(0)), dec(r.get::<_, &[u8]>(1))?)))
            .collect::<R<Vec<_>>>()?;
            let timers = if meta.timers > 0 {
                rows(
                    t,
                    "SELECT name FROM timers WHERE key = $1 ORDER BY name",
                    &[&key],
                )?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
            } else {
                Vec::new()
            };
            Ok(Some(Pending {
                meta,
                state,
                messages,
                timers,
            }))
        })
    }

    fn view(&self, key: &str, dead_max: usize) -> R<Option<View>> {
        let key = key.to_owned();
        self.snapshot(move |t| {
            let Some(meta) = meta_of(t, &key)? else {
                return Ok(None);
            };
            let state = state_of(t, &key)?;
            let dead_letters = rows(
                t,
                "SELECT seq, letter FROM dead_letters WHERE key = $1 ORDER BY seq LIMIT $2",
                &[&key, &limit(dead_max)],
            )?
            .iter()
            .map(|r| Ok((unbig(r.get(0)), dec(r.get::<_, &[u8]>(1))?)))
            .collect::<R<Vec<_>>>()?;
            let depth: i64 = rows(t, "SELECT count(*) FROM mailbox WHERE key = $1", &[&key])?
                .first()
                .map_or(0, |r| r.get(0));
            Ok(Some(View {
                meta,
                mailbox_depth: unbig(depth),
                state,
                dead_letters,
            }))
        })
    }

    fn requests(&self, after: Option<u128>, max: usize) -> R<Vec<(u128, RequestRecord)>> {
        self.on(move |c| {
            let from = match after {
                Some(u128::MAX) => return Ok(Vec::new()),
                Some(a) => a + 1,
                None => 0,
            };
            rows(
                c,
                "SELECT id, record FROM requests WHERE id >= $1 ORDER BY id LIMIT $2",
                &[&id(from), &limit(max)],
            )?
            .iter()
            .map(|r| Ok((unid(r.get(0))?, dec(r.get::<_, &[u8]>(1))?)))
            .collect()
        })
    }

    fn actors(&self, prefix: &str, after: Option<&str>, max: usize) -> R<Vec<(String, ActorMeta)>> {
        let prefix = prefix.to_owned();
        let start = after
            .filter(|a| *a > prefix.as_str())
            .unwrap_or(&prefix)
            .to_owned();
        let skip = after.map(str::to_owned);
        self.on(move |c| {
            let mut out = Vec::new();
            for r in rows(
                c,
                "SELECT key, meta FROM actors WHERE key >= $1 ORDER BY key LIMIT $2",
                &[&start, &limit(max.saturating_add(1))],
            )? {
                let key: String = r.get(0);
                if !key.starts_with(&prefix) || out.len() >= max {
                    break;
                }
                if Some(&key) == skip.as_ref() {
                    continue;
                }
                let meta = dec(r.get::<_, &[u8]>(1))?;
                out.push((key, meta));
            }
            Ok(out)
        })
    }

    fn history(&self, key: &str, before: Option<u64>, max: usize) -> R<Vec<(u64, TurnRecord)>> {
        let key = key.to_owned();
        self.on(move |c| crate::history_of(c, &key, before, max))
    }

    fn history_state(&self, key: &str, seq: u64) -> R<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.on(move |c| {
            Ok(rows(
                c,
                "SELECT state FROM history_states WHERE key = $1 AND seq = $2",
                &[&key, &big(seq)],
            )?
            .first()
            .map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn request(&self, rid: u128) -> R<Option<RequestRecord>> {
        self.on(move |c| {
            one_record(rows(
                c,
                "SELECT record FROM requests WHERE id = $1",
                &[&id(rid)],
            )?)
        })
    }

    fn modules(&self, prefix: &str) -> R<Vec<(String, ModuleRecord)>> {
        let prefix = prefix.to_owned();
        self.on(move |c| {
            rows(
                c,
                "SELECT key, record FROM modules WHERE key >= $1 ORDER BY key",
                &[&prefix],
            )?
            .iter()
            .map(|r| (r.get::<_, String>(0), r))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, r)| Ok((k, dec(r.get::<_, &[u8]>(1))?)))
            .collect()
        })
    }

    fn module_bytes(&self, digest: &str) -> R<Option<Vec<u8>>> {
        let digest = digest.to_owned();
        self.on(move |c| {
            Ok(rows(
                c,
                "SELECT bytes FROM module_bytes WHERE digest = $1",
                &[&digest],
            )?
            .first()
            .map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn tenants(&self) -> R<Vec<(String, TenantRecord)>> {
        self.on(|c| {
            rows(c, "SELECT name, record FROM tenants ORDER BY name", &[])?
                .iter()
                .map(|r| Ok((r.get::<_, String>(0), dec(r.get::<_, &[u8]>(1))?)))
                .collect()
        })
    }

    fn api_keys(&self) -> R<Vec<(String, KeyRecord)>> {
        self.on(|c| {
            rows(c, "SELECT id, record FROM api_keys ORDER BY id", &[])?
                .iter()
                .map(|r| Ok((r.get::<_, String>(0), dec(r.get::<_, &[u8]>(1))?)))
                .collect()
        })
    }

    fn meta(&self, key: &str) -> R<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.on(move |c| {
            Ok(rows(c, "SELECT value FROM meta WHERE key = $1", &[&key])?
                .first()
                .map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn meta_keys(&self, prefix: &str) -> R<Vec<String>> {
        let prefix = prefix.to_owned();
        self.on(move |c| {
            Ok(rows(
                c,
                "SELECT key FROM meta WHERE key >= $1 ORDER BY key",
                &[&prefix],
            )?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .take_while(|k| k.starts_with(&prefix))
            .collect())
        })
    }

    fn tenant_actor_count(&self, tenant: &str) -> R<u64> {
        let tenant = tenant.to_owned();
        self.on(move |c| {
            Ok(rows(
                c,
                "SELECT count FROM actor_counts WHERE tenant = $1",
                &[&tenant],
            )?
            .first()
            .map_or(0, |r| unbig(r.get(0))))
        })
    }

    fn actor_total(&self) -> R<u64> {
        self.on(|c| {
            Ok(rows(c, "SELECT count(*) FROM actors", &[])?
                .first()
                .map_or(0, |r| unbig(r.get(0))))
        })
    }

    /// Counted when scraped (a scrape every few seconds; `count(*)` reads the tables).
    fn backlog(&self) -> R<dwell_storage::Backlog> {
        self.on(|c| {
            let row = rows(
                c,
                "SELECT (SELECT count(*) FROM mailbox), (SELECT count(*) FROM timers), \
                 (SELECT count(*) FROM outbox)",
                &[],
            )?;
            let n = |i: usize| row.first().map_or(0, |r| unbig(r.get(i)));
            Ok(dwell_storage::Backlog {
                mailbox: n(0),
                timers: n(1),
                outbox: n(2),
            })
        })
    }

    fn ready_actors(&self) -> R<Vec<String>> {
        self.on(|c| {
            Ok(
                rows(c, "SELECT DISTINCT key FROM mailbox ORDER BY key", &[])?
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect(),
            )
        })
    }

    fn inbox(&self, after: Option<u64>, max: usize) -> R<Vec<(u64, String)>> {
        let from = after.map_or(0, big);
        self.on(move |c| {
            Ok(rows(
                c,
                "SELECT id, key FROM inbox WHERE id > $1 ORDER BY id LIMIT $2",
                &[&from, &limit(max)],
            )?
            .iter()
            .map(|r| (unbig(r.get(0)), r.get::<_, String>(1)))
            .collect())
        })
    }

    fn next_timer_due(&self) -> R<Option<UnixMs>> {
        self.on(|c| Ok(first_due(rows(c, "SELECT min(due) FROM timers", &[])?)))
    }

    fn timers_after(
        &self,
        after: Option<&TimerKey>,
        until: UnixMs,
        max: usize,
    ) -> R<Vec<(TimerKey, Vec<u8>)>> {
        let after = after.cloned();
        self.on(move |c| {
            let found = match &after {
                Some((d, a, n)) => rows(
                    c,
                    "SELECT due, key, name, payload FROM timers WHERE (due, key, name) > ($1, $2, $3) AND due <= $4 ORDER BY due, key, name LIMIT $5",
                    &[&big(*d), a, n, &big(until), &limit(max)],
                )?,
                None => rows(
                    c,
                    "SELECT due, key, name, payload FROM timers WHERE due <= $1 ORDER BY due, key, name LIMIT $2",
                    &[&big(until), &limit(max)],
                )?,
            };
            Ok(found
                .iter()
                .map(|r| {
                    (
                        (unbig(r.get(0)), r.get::<_, String>(1), r.get::<_, String>(2)),
                        r.get::<_, Vec<u8>>(3),
                    )
                })
                .collect())
        })
    }

    fn timers_of(&self, key: &str) -> R<Vec<(String, UnixMs)>> {
        let key = key.to_owned();
        self.on(move |c| {
            Ok(rows(
                c,
                "SELECT name, due FROM timers WHERE key = $1 ORDER BY name LIMIT 1000",
                &[&key],
            )?
            .iter()
            .map(|r| (r.get::<_, String>(0), unbig(r.get(1))))
            .collect())
        })
    }

    fn outbox_due(&self, now: UnixMs, max: usize) -> R<Vec<(u128, OutboxEntry)>> {
        self.on(move |c| {
            rows(
                c,
                "SELECT id, entry FROM outbox WHERE due <= $1 ORDER BY due, id LIMIT $2",
                &[&big(now), &limit(max)],
            )?
            .iter()
            .map(|r| Ok((unid(r.get::<_, &[u8]>(0))?, dec(r.get::<_, &[u8]>(1))?)))
            .collect()
        })
    }

    fn next_outbox_due(&self) -> R<Option<UnixMs>> {
        self.on(|c| Ok(first_due(rows(c, "SELECT min(due) FROM outbox", &[])?)))
    }

    fn http_pending_of(&self, key: &str) -> R<Vec<OutboxEntry>> {
        let key = key.to_owned();
        self.on(move |c| {
            rows(
                c,
                "SELECT o.entry FROM http_pending p JOIN outbox o ON o.id = p.id WHERE p.key = $1 ORDER BY p.call LIMIT 1000",
                &[&key],
            )?
            .iter()
            .map(|r| dec(r.get::<_, &[u8]>(0)))
            .collect()
        })
    }
}

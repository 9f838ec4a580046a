//! The benchmark on PostgreSQL (`--postgres URL`): one fresh database per data directory
//! (made by `dwell-testkit`), and what the server cost the database (WAL bytes, rows
//! written).

use std::path::Path;

use anyhow::Context as _;

use crate::Args;

/// The prefix of the bench's database names (tells them from the test suite's).
const DB_PREFIX: &str = "dwell_bench_";

/// `--store URL` for a server or engine on `data`, when the run is on PostgreSQL: the
/// database of that directory (`dwell-testkit`: a restart on it finds its state), made
/// on first use.
pub(crate) fn store_for(args: &Args, data: &Path) -> anyhow::Result<Option<String>> {
    let Some(server) = &args.postgres else {
        return Ok(None);
    };
    let url = dwell_testkit::database_url(server, DB_PREFIX, data).context("--postgres")?;
    Ok(Some(url))
}

/// The database's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgCounters {
    /// WAL position, in bytes since the cluster began.
    pub(crate) wal: u64,
    /// Rows inserted, updated and deleted in the database so far.
    pub(crate) rows: u64,
    /// Transactions committed in the database so far.
    pub(crate) commits: u64,
}

impl PgCounters {
    /// Read them (statistics are flushed by each backend within a second: wait first).
    pub(crate) fn read(url: &str) -> anyhow::Result<PgCounters> {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let mut c = postgres::Client::connect(url, postgres::NoTls)?;
        let row = c.query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, \
             (tup_inserted + tup_updated + tup_deleted)::bigint, xact_commit::bigint \
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )?;
        Ok(PgCounters {
            wal: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            rows: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            commits: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
        })
    }
}

/// The CPU time the PostgreSQL server at `url` used so far: its postmaster (with the
/// backends that exited) and its live backends. The server must run on this machine.
pub(crate) fn server_cpu(url: &str) -> anyhow::Result<std::time::Duration> {
    let mut c = postgres::Client::connect(url, postgres::NoTls)?;
    let backend: i32 = c.query_one("SELECT pg_backend_pid()", &[])?.get(0);
    let postmaster = crate::util::parent_of(backend as u32)
        .context("the PostgreSQL server is not on this machine")?;
    drop(c);
    let mut total = crate::util::cpu_time(postmaster, true);
    for child in crate::util::children_of(postmaster) {
        total += crate::util::cpu_time(child, false);
    }
    Ok(total)
}

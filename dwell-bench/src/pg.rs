//! The benchmark on PostgreSQL (`--postgres URL`): one fresh database per data
//! directory, and what the server cost the database (WAL bytes, rows written).

use std::path::Path;

use anyhow::Context as _;

use crate::Args;

/// `--store URL` for a server or engine on `data`, when the run is on PostgreSQL: the
/// database is named after the directory (a restart on it finds its state) and made
/// on first use.
pub(crate) fn store_for(args: &Args, data: &Path) -> anyhow::Result<Option<String>> {
    let Some(base) = &args.postgres else {
        return Ok(None);
    };
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    let db = format!("dwell_bench_{h:016x}");
    let base = base.trim_end_matches('/');
    let mut admin = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .context("connecting to --postgres")?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])?
        .is_some();
    if !exists {
        admin.batch_execute(&format!("CREATE DATABASE {db}"))?;
    }
    Ok(Some(format!("{base}/{db}")))
}

/// The database's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgCounters {
    /// WAL position, in bytes since the cluster began.
    pub(crate) wal: u64,
    /// Rows inserted, updated and deleted in the database so far.
    pub(crate) rows: u64,
}

impl PgCounters {
    /// Read them (statistics are flushed by each backend within a second: wait first).
    pub(crate) fn read(url: &str) -> anyhow::Result<PgCounters> {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let mut c = postgres::Client::connect(url, postgres::NoTls)?;
        let row = c.query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, \
             (tup_inserted + tup_updated + tup_deleted)::bigint \
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )?;
        Ok(PgCounters {
            wal: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            rows: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        })
    }
}

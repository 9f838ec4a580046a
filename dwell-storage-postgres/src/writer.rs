//! The write side on PostgreSQL as a [`dwell_storage::Backend`]: the node's single
//! writer commits each batch through one connection holding this node's partition, and
//! connects again (keeping the claimed epoch) after the connection failed.

use dwell_storage::{Backend, Error};

use crate::{PgReads, PgTables, Postgres, R};

/// Reader threads (each with its own connection).
const READERS: usize = 4;

/// The writer's connection, holding this node's partition.
pub struct PgWriter {
    url: String,
    conn: Postgres,
}

/// Connect to `url`: apply the schema, claim the partition as `owner`, drop slices
/// staged by batches that never committed; the write side and the read side. The
/// blocking client runs its own runtime, so this runs on a thread of its own (the caller
/// may be inside tokio).
pub fn open(url: &str, owner: &str) -> R<(PgWriter, PgReads)> {
    let o = owner.to_owned();
    sides(url, move |u| {
        let mut conn = Postgres::connect(u, &o)?;
        let dropped = conn.drop_staged()?;
        if dropped > 0 {
            tracing::info!(dropped, "dropped large states staged before a crash");
        }
        Ok(conn)
    })
}

/// Connect to `url` as a cluster node's writer and readers: apply the schema; each
/// commit is fenced on the partitions it writes at the epochs `placement` holds (the
/// node's membership loop keeps it). Staged slices are left alone: other nodes' batches
/// may be staging theirs. The server ends a write transaction left open longer than
/// half the `lease` (a paused node's locks never outlive its lease).
pub fn open_member(
    url: &str,
    placement: std::sync::Arc<dwell_types::placement::Placement>,
    lease: std::time::Duration,
) -> R<(PgWriter, PgReads)> {
    sides(url, move |u| {
        Postgres::connect_member(u, placement, lease / 2)
    })
}

/// The write side made by `connect` (on a thread of its own: the blocking client runs
/// its own runtime, and the caller may be inside tokio) and the read side.
fn sides(
    url: &str,
    connect: impl FnOnce(&str) -> R<Postgres> + Send + 'static,
) -> R<(PgWriter, PgReads)> {
    let u = url.to_owned();
    let conn = std::thread::spawn(move || connect(&u))
        .join()
        .map_err(|_| Error::Backend("the PostgreSQL connect thread panicked".into()))??;
    let writer = PgWriter {
        url: url.to_owned(),
        conn,
    };
    Ok((writer, PgReads::new(url, READERS)))
}

impl Backend for PgWriter {
    type Tables<'t> = PgTables<'t>;
    /// Each read is a round trip: a batch starts by reading what it will need at once.
    const PREFETCH: bool = true;

    fn write<T>(&mut self, f: impl for<'t> FnOnce(&mut PgTables<'t>) -> R<T>) -> R<T> {
        let out = self.conn.write(f);
        if out.is_err() && self.conn.is_closed() {
            // The server ended the session (a transaction left idle past half the lease
            // is fenced, not unavailable): connect again before the next batch.
            if let Err(e) = self.recover() {
                tracing::warn!(error = %e, "cannot connect to PostgreSQL again yet");
            }
        }
        out
    }

    fn recover(&mut self) -> R<()> {
        self.conn = self.conn.resume(&self.url)?;
        tracing::info!("connected to PostgreSQL again");
        Ok(())
    }

    fn statements(&self) -> u64 {
        self.conn.executed()
    }
}

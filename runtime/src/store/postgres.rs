//! The store on PostgreSQL (`dwell serve --store postgres://…`): the writer's connection
//! and the readers, from `dwell-storage-postgres`. The rest of the store — group commit,
//! the turn core, large states in slices — is the same as on redb.

use std::sync::Arc;

use dwell_storage::faults::Faults;
use dwell_storage_postgres::{PgReads, Postgres};

use super::Error;

/// Reader threads (each with its own connection).
const READERS: usize = 4;

/// The writer's side of PostgreSQL: its connection, holding this node's partition.
pub(crate) struct PgWriter {
    url: String,
    pub(super) conn: Postgres,
    pub(super) faults: Option<Arc<Faults>>,
}

impl PgWriter {
    /// Connect, apply the schema, claim the partition and drop slices staged by batches
    /// that never committed. The blocking client runs its own runtime, so this runs on
    /// a thread of its own (the caller may be inside tokio).
    pub(super) fn connect(
        url: &str,
        owner: &str,
        faults: Option<Arc<Faults>>,
    ) -> Result<(PgWriter, PgReads), Error> {
        let (u, o) = (url.to_owned(), owner.to_owned());
        let conn = std::thread::spawn(move || {
            let mut conn = Postgres::connect(&u, &o)?;
            let dropped = conn.drop_staged()?;
            if dropped > 0 {
                tracing::info!(dropped, "dropped large states staged before a crash");
            }
            Ok::<_, dwell_storage::Error>(conn)
        })
        .join()
        .map_err(|_| Error::Corrupt("the PostgreSQL connect thread panicked".into()))??;
        let writer = PgWriter {
            url: url.to_owned(),
            conn,
            faults,
        };
        Ok((writer, PgReads::new(url, READERS)))
    }

    /// Connect again (after the connection failed), keeping the claimed epoch.
    pub(super) fn reconnect(&mut self) -> Result<(), Error> {
        self.conn = self.conn.resume(&self.url)?;
        tracing::info!("connected to PostgreSQL again");
        Ok(())
    }
}

//! Wiring the store: `dwell serve` keeps its durable state in the redb file in the data
//! directory (the default) or in PostgreSQL (`--store postgres://…`). This is the one
//! place that names both backends; the engine takes whichever is opened here.

use std::path::Path;

use crate::engine::Storage;

/// Open the backend: PostgreSQL at `url` when given (the schema is applied and the
/// partition claimed as this host and process), else `<data>/dwell.redb`.
pub fn open(data: &Path, url: Option<&str>) -> Result<Storage, dwell_storage::Error> {
    Ok(match url {
        Some(url) => {
            let owner = format!("{}:{}", hostname(), std::process::id());
            let (writer, reads) = dwell_storage_postgres::open(url, &owner)?;
            Storage::new(writer, reads)
        }
        None => {
            let (writer, reads) = dwell_storage_redb::open(data)?;
            Storage::new(writer, reads)
        }
    })
}

/// This machine's name, for the owner column of the partitions it claims.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "dwell".into())
}

//! The storage contract on redb, the embedded default: everything durable in one file,
//! `<data>/dwell.redb`. [`open`] makes the data directory (owner only) and the file
//! (whole or not at all), repairs a file not closed cleanly, and drops large states
//! staged by batches that never committed; it returns the write side ([`Redb`], a
//! [`dwell_storage::Backend`] for the node's single writer) and the read side
//! ([`RedbReads`], reads on the caller's thread).
//!
//! - `schema` — the table definitions; keys are chosen so the scans the node needs are
//!   range scans.
//! - `tables` — [`dwell_storage::Tables`] over the open tables of one write
//!   transaction, keeping redb's secondary tables in step.
//! - `reads` — [`dwell_storage::Reads`].
//! - `history` — turn history: append-only logs shared by all actors, swept from the
//!   front.
//! - `large` — slices of large states.
//! - `records` — the on-disk record format (a version byte, then MessagePack).
//!
//! After an I/O error redb refuses every operation until the file is opened again, so
//! the open file lives in a shared cell: the writer reopens it in place
//! ([`dwell_storage::Backend::recover`]; a full disk that gets room again needs no
//! restart) and readers take the current handle per call.

mod history;
mod large;
mod reads;
mod records;
mod schema;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::Database;

pub use reads::RedbReads;
pub use tables::RedbTables;

/// Failures inside this crate; callers see them as [`dwell_storage::Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The file is being opened again after an I/O error.
    #[error("the data file is being reopened after an I/O error")]
    Unavailable,
    #[error("cannot open data directory: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Storage(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A redb failure in the contract's terms: a full disk and an I/O error (after which
/// redb refuses everything until the file is opened again) keep their kind.
pub fn storage_error(e: impl Into<redb::Error>) -> dwell_storage::Error {
    match e.into() {
        redb::Error::Io(io)
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.raw_os_error() == Some(libc::ENOSPC) =>
        {
            dwell_storage::Error::Full
        }
        redb::Error::PreviousIo | redb::Error::Io(_) => dwell_storage::Error::Unavailable,
        e => dwell_storage::Error::Backend(e.to_string()),
    }
}

impl From<Error> for dwell_storage::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Corrupt(c) => dwell_storage::Error::Corrupt(c),
            Error::Unavailable => dwell_storage::Error::Unavailable,
            Error::Storage(e) => storage_error(e),
            Error::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => dwell_storage::Error::Full,
            Error::Io(io) => dwell_storage::Error::Backend(io.to_string()),
        }
    }
}

/// The open data file, shared by the writer and the readers.
pub(crate) struct Cell {
    path: PathBuf,
    current: RwLock<Option<Arc<Database>>>,
    /// The last write failed for lack of space (and none has succeeded since).
    full: AtomicBool,
    /// See [`history::SLACK`].
    history_slack: AtomicU64,
}

impl Cell {
    pub(crate) fn get(&self) -> Result<Arc<Database>, Error> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::Unavailable)
    }

    /// Close the file and open it again (redb repairs it if needed).
    fn reopen(&self) -> Result<(), Error> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = current.take() {
            // Readers hold a handle only for one call: wait for them, briefly.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        *current = Some(Arc::new(open_database(&self.path)?));
        tracing::info!("the data file is open again");
        Ok(())
    }

    /// After a write failed for lack of space: is there room again? (redb may still fit
    /// a small commit into free pages of its file; ask the file system.)
    fn room(&self) -> Result<(), dwell_storage::Error> {
        if !self.full.load(Ordering::Relaxed) {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let scratch = dir.join(".space-probe");
        let room = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&scratch)?;
            f.write_all(&vec![0u8; 4 << 20])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&scratch);
        if room.is_err() {
            return Err(dwell_storage::Error::Full);
        }
        self.full.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// The write side: the node's single writer commits through it.
pub struct Redb {
    cell: Arc<Cell>,
}

impl Redb {
    /// How far the history logs may grow past twice their live entries before a sweep
    /// (default [`history::SLACK`]); tests of the sweep make it small.
    #[doc(hidden)]
    pub fn set_history_slack(&self, entries: u64) {
        self.cell.history_slack.store(entries, Ordering::Relaxed);
    }
}

impl dwell_storage::Backend for Redb {
    type Tables<'t> = RedbTables<'t>;

    fn write<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut RedbTables<'t>) -> Result<R, dwell_storage::Error>,
    ) -> Result<R, dwell_storage::Error> {
        let db = self.cell.get()?;
        let txn = db.begin_write().map_err(storage_error)?;
        let out = {
            let mut tables = RedbTables::open(&txn)?;
            let out = f(&mut tables)?;
            tables.finish(self.cell.history_slack.load(Ordering::Relaxed))?;
            out
        };
        txn.commit().map_err(storage_error)?;
        Ok(out)
    }

    fn recover(&mut self) -> Result<(), dwell_storage::Error> {
        Ok(self.cell.reopen()?)
    }

    fn set_full(&self, full: bool) {
        self.cell.full.store(full, Ordering::Relaxed);
    }
}

/// Open (or create) `<dir>/dwell.redb`: the write side and the read side.
pub fn open(dir: &Path) -> Result<(Redb, RedbReads), dwell_storage::Error> {
    Ok(open_dir(dir)?)
}

fn open_dir(dir: &Path) -> Result<(Redb, RedbReads), Error> {
    // Owner only: the directory 0700 and the data file 0600, whatever the umask, and
    // tightened on every start for directories made before.
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let file = dir.join("dwell.redb");
        if std::fs::metadata(&file)
            .map(|m| m.len() == 0)
            .unwrap_or(true)
        {
            create_database_file(dir, &file)?;
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    }
    let path = dir.join("dwell.redb");
    let database = open_database(&path)?;
    {
        // Slices staged by batches that never committed (see `large`).
        let txn = database.begin_write()?;
        let dropped = large::LargeTables::open(&txn)?.unstage_all()?;
        txn.commit()?;
        if dropped > 0 {
            tracing::info!(dropped, "dropped large states staged before a crash");
        }
    }
    let cell = Arc::new(Cell {
        current: RwLock::new(Some(Arc::new(database))),
        path,
        full: AtomicBool::new(false),
        history_slack: AtomicU64::new(history::SLACK),
    });
    Ok((Redb { cell: cell.clone() }, RedbReads { db: cell }))
}

/// Create `file` whole or not at all: redb refuses to open a file killed between its
/// first resize and its header write ("magic number mismatch"), so the database is made
/// under another name and renamed into place once it is on disk.
fn create_database_file(dir: &Path, file: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let new = dir.join("dwell.redb.new");
    match std::fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&new)?;
    drop(open_database(&new)?);
    std::fs::File::open(&new)?.sync_all()?;
    std::fs::rename(&new, file)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn open_database(path: &Path) -> Result<Database, Error> {
    let db = Database::builder()
        .set_cache_size(128 << 20)
        .set_repair_callback(|session| {
            if session.progress() == 0.0 {
                tracing::warn!("the data file was not closed cleanly; repairing it");
            }
        })
        .create(path)?;
    let txn = db.begin_write()?;
    schema::create_all(&txn)?;
    large::create_all(&txn)?;
    txn.commit()?;
    Ok(db)
}

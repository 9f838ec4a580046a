//! The storage conformance suite (`dwell_core::conformance`) on redb: every scenario,
//! and random operation sequences compared with the in-memory reference, on a real file.

use dwell_storage_redb::Redb;

/// The backend under test, and the directory its file lives in.
struct OnFile {
    _dir: tempfile::TempDir,
    redb: Redb,
}

impl dwell_core::conformance::Backend for OnFile {
    type Tables<'t> = <Redb as dwell_storage::Backend>::Tables<'t>;
    fn write<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut Self::Tables<'t>) -> Result<R, dwell_storage::Error>,
    ) -> Result<R, dwell_storage::Error> {
        dwell_storage::Backend::write(&mut self.redb, f)
    }
}

fn redb() -> OnFile {
    let dir = tempfile::tempdir().unwrap();
    let (redb, _reads) = dwell_storage_redb::open(dir.path()).unwrap();
    OnFile { _dir: dir, redb }
}

mod conformance {
    use super::redb;
    dwell_core::conformance_tests!(redb());
}

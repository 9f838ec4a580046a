//! [`Backend`]: a store that commits write transactions over [`Tables`] — what the
//! node's single writer needs (one transaction at a time, and making the backend usable
//! again after one failed), and what the conformance suite drives. The writer (group
//! commit, the turn core, answers after COMMIT) is written once, generic over it; a
//! backend crate implements it next to its [`Tables`] and [`crate::Reads`].

use crate::{Error, Tables};

pub trait Backend {
    /// The tables of one open write transaction.
    type Tables<'t>: Tables;

    /// Reads cost a round trip: the writer starts each batch with [`Tables::prefetch`].
    const PREFETCH: bool = false;

    /// Run `f` in one write transaction and commit it if `f` succeeds. Nothing `f` wrote
    /// is durable or visible to readers unless this returns `Ok`. `f` is not called when
    /// the transaction cannot begin or the backend refuses it before any write (e.g. a
    /// partition this node no longer owns).
    fn write<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut Self::Tables<'t>) -> Result<R, Error>,
    ) -> Result<R, Error>;

    /// Make the backend usable again after a write failed with [`Error::Full`] or
    /// [`Error::Unavailable`] (a file to reopen, a connection to make again). `Err`
    /// while it cannot yet; the writer tries again before its next batch.
    fn recover(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Round trips (statements) executed so far; 0 where a write costs none.
    fn statements(&self) -> u64 {
        0
    }

    /// Whether the last write failed for lack of room (`true`) or one has succeeded
    /// since (`false`), for a backend whose readiness ([`crate::Reads::room`]) uses it.
    fn set_full(&self, _full: bool) {}
}

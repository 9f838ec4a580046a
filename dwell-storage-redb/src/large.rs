//! Large states, written in slices so one tenant's big snapshots do not hold up the
//! writer for everyone else.
//!
//! A state up to [`dwell_storage::LARGE`] bytes is one value in `states`, as always. A larger one is
//! *staged* first: the engine's store (`submit_batch`) cuts it into [`dwell_storage::SLICE`]-sized
//! pieces and commits each as its own small writer operation (waiting for each, so the
//! cost falls on the tenant that wrote it, and other tenants' commits run in between).
//! The turn's own commit then only points the actor at the staged slices (`state_refs`),
//! together with its dequeue and effects — still one atomic step. The writer never takes
//! more than [`dwell_storage::BATCH_SLICE_BYTES`] of slices into one transaction.
//!
//! Invariants: an actor has its state in `states` or in `state_refs`, never both; slices
//! are reachable from exactly one place — a `state_refs` entry or the `staged` table
//! (staged, not yet committed); a turn that is not applied drops its staged slices in
//! the same transaction; slices staged by a batch that never committed (a crash, a failed
//! commit) are dropped at the next start.

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::Error;
use crate::records;
use crate::schema::STATES;

/// `tenant/module/key` → [`StateRef`]: the actor's state is in slices.
pub const STATE_REFS: TableDefinition<&str, &[u8]> = TableDefinition::new("state_refs");
/// `(slices id, index)` → bytes.
pub const STATE_SLICES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("state_slices");
/// slices id → number of slices staged so far: not referenced by any actor yet.
pub const STAGED: TableDefinition<u64, u32> = TableDefinition::new("staged_slices");

use dwell_storage::StateRef;

pub fn create_all(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(STATE_REFS)?;
    txn.open_table(STATE_SLICES)?;
    txn.open_table(STAGED)?;
    Ok(())
}

/// An actor's state, from `states` or assembled from its slices.
pub fn read_state(txn: &ReadTransaction, key: &str) -> Result<Option<Vec<u8>>, Error> {
    if let Some(v) = txn.open_table(STATES)?.get(key)? {
        return Ok(Some(v.value().to_vec()));
    }
    let Some(r) = txn.open_table(STATE_REFS)?.get(key)? else {
        return Ok(None);
    };
    let r: StateRef = records::decode(r.value())?;
    let slices = txn.open_table(STATE_SLICES)?;
    let mut state = Vec::with_capacity(r.len as usize);
    for i in 0..r.slices {
        let Some(s) = slices.get((r.id, i))? else {
            return Err(Error::Corrupt(format!("state slice {}/{i} missing", r.id)));
        };
        state.extend_from_slice(s.value());
    }
    if state.len() as u64 != r.len {
        return Err(Error::Corrupt(format!("state slices {} incomplete", r.id)));
    }
    Ok(Some(state))
}

/// The tables of large states in a write transaction.
pub struct LargeTables<'t> {
    refs: Table<'t, &'static str, &'static [u8]>,
    slices: Table<'t, (u64, u32), &'static [u8]>,
    staged: Table<'t, u64, u32>,
}

impl<'t> LargeTables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, Error> {
        Ok(LargeTables {
            refs: txn.open_table(STATE_REFS)?,
            slices: txn.open_table(STATE_SLICES)?,
            staged: txn.open_table(STAGED)?,
        })
    }

    /// The state `key` has in slices, assembled.
    pub fn assemble(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(r) = self.refs.get(key)? else {
            return Ok(None);
        };
        let r: StateRef = records::decode(r.value())?;
        let mut state = Vec::with_capacity(r.len as usize);
        for i in 0..r.slices {
            let Some(s) = self.slices.get((r.id, i))? else {
                return Err(Error::Corrupt(format!("state slice {}/{i} missing", r.id)));
            };
            state.extend_from_slice(s.value());
        }
        Ok(Some(state))
    }

    /// Stage slice `index` of slices `id`.
    pub fn stage(&mut self, id: u64, index: u32, bytes: &[u8]) -> Result<(), Error> {
        self.slices.insert((id, index), bytes)?;
        let n = self.staged.get(id)?.map(|v| v.value()).unwrap_or(0);
        self.staged.insert(id, n.max(index + 1))?;
        Ok(())
    }

    /// Point `key` at staged slices (its state in `states`, if any, is removed by the
    /// caller); its previous slices, if any, are dropped.
    pub fn set_ref(&mut self, key: &str, r: StateRef) -> Result<(), Error> {
        self.staged.remove(r.id)?;
        let old = self
            .refs
            .insert(key, records::encode(&r).as_slice())?
            .map(|v| v.value().to_vec());
        if let Some(old) = old {
            let old: StateRef = records::decode(&old)?;
            if old.id != r.id {
                self.drop_slices(old.id, old.slices)?;
            }
        }
        Ok(())
    }

    /// `key`'s state is no longer in slices (it is in `states`, or gone).
    pub fn clear_ref(&mut self, key: &str) -> Result<(), Error> {
        let old = self.refs.remove(key)?.map(|v| v.value().to_vec());
        if let Some(old) = old {
            let old: StateRef = records::decode(&old)?;
            self.drop_slices(old.id, old.slices)?;
        }
        Ok(())
    }

    /// Drop staged slices that will never be referenced.
    pub fn unstage(&mut self, id: u64) -> Result<(), Error> {
        let n = self.staged.remove(id)?.map(|v| v.value());
        if let Some(n) = n {
            self.drop_slices(id, n)?;
        }
        Ok(())
    }

    /// Drop every staged slice (at start: their batches never committed). Returns how
    /// many sets of slices were dropped.
    pub fn unstage_all(&mut self) -> Result<usize, Error> {
        let mut ids = Vec::new();
        for entry in self.staged.iter()? {
            let (k, v) = entry?;
            ids.push((k.value(), v.value()));
        }
        for (id, n) in &ids {
            self.staged.remove(*id)?;
            self.drop_slices(*id, *n)?;
        }
        Ok(ids.len())
    }

    fn drop_slices(&mut self, id: u64, n: u32) -> Result<(), Error> {
        for i in 0..n {
            self.slices.remove((id, i))?;
        }
        Ok(())
    }
}

//! Where actors run in a cluster: the partitions this node holds (at the epochs it
//! claimed them at) and which node owns every other one. One [`Placement`] is shared by
//! the node's membership loop (which sets it), its writer (which fences every commit on
//! the epochs of the partitions it writes), the turn core (a message for an actor held
//! elsewhere goes to the inbox) and the engine and HTTP layer (work and calls for
//! actors held elsewhere are not taken: they are forwarded). A single node has none:
//! everything is its own.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::ActorId;
use crate::ids::stable_hash;

/// The partitions a node holds: partition → the epoch it claimed it at.
pub type Held = BTreeMap<u32, i64>;

/// One moment's view of the cluster from this node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// What this node holds.
    pub held: Held,
    /// Each partition's owner: its address (`host:port`), `None` while nobody holds it.
    pub owners: Vec<Option<String>>,
    /// This node takes new work: its lease is safely ahead. A node whose lease is close
    /// to running out (the database unreachable) stops taking work before another node
    /// may claim its partitions.
    pub serving: bool,
    /// And only until then (a safe part of the lease from its last renewal), even if
    /// nothing comes to say so: a node whose membership loop stalls stops by itself.
    pub until: Option<std::time::Instant>,
}

/// A node as the database sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub node: String,
    /// Where other nodes reach it (`host:port`).
    pub advertise: String,
    /// Its lease has not run out.
    pub live: bool,
    /// Milliseconds left on its lease (negative: ran out that long ago).
    pub lease_left_ms: i64,
}

/// One partition's owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OwnerView {
    pub partition: u32,
    pub epoch: i64,
    /// The node that claimed it last (`""`: never claimed, or handed back).
    pub node: String,
    /// That node's lease has not run out.
    pub live: bool,
}

/// The cluster as one snapshot of the database.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterView {
    pub partitions: u32,
    pub nodes: Vec<NodeView>,
    pub owners: Vec<OwnerView>,
}

/// This node's place in the cluster (see the module doc).
#[derive(Debug)]
pub struct Placement {
    node: String,
    partitions: u32,
    now: RwLock<Snapshot>,
    /// The last view of the whole cluster (for operators).
    view: RwLock<ClusterView>,
    /// Commits refused because this node no longer held a partition they wrote.
    fenced: AtomicU64,
    /// Goes up each time this node gains a partition or starts serving again: the
    /// engine then looks for work it now owns (mail, overdue timers, deliveries).
    gained: AtomicU64,
}

/// The partition of a storage key (`tenant/module/key`) among `count`: FNV-1a, so the
/// same on every node and build ([`ActorId::partition`] is this of its storage key).
pub fn partition_of(storage_key: &str, count: u32) -> u32 {
    (stable_hash(storage_key.as_bytes()) % u64::from(count.max(1))) as u32
}

impl Placement {
    /// A node `node` of a cluster of `partitions` partitions, holding none yet.
    pub fn new(node: impl Into<String>, partitions: u32) -> Placement {
        Placement {
            node: node.into(),
            partitions: partitions.max(1),
            now: RwLock::new(Snapshot {
                owners: vec![None; partitions.max(1) as usize],
                ..Snapshot::default()
            }),
            gained: AtomicU64::new(0),
            view: RwLock::new(ClusterView::default()),
            fenced: AtomicU64::new(0),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.now.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node runs `actor` now: it holds its partition and is serving.
    pub fn local(&self, actor: &ActorId) -> bool {
        self.local_key(&actor.storage_key())
    }

    /// [`Placement::local`] by storage key.
    pub fn local_key(&self, storage_key: &str) -> bool {
        let s = self.read();
        s.serving
            && s.until.is_none_or(|t| std::time::Instant::now() < t)
            && s.held
                .contains_key(&partition_of(storage_key, self.partitions))
    }

    /// Where `actor` runs when not here: its owner's address, `None` while its partition
    /// has no owner (or this node holds it).
    pub fn owner(&self, actor: &ActorId) -> Option<String> {
        let p = partition_of(&actor.storage_key(), self.partitions);
        let s = self.read();
        if s.held.contains_key(&p) {
            return None;
        }
        s.owners.get(p as usize).cloned().flatten()
    }

    /// The partition of a storage key in this cluster.
    pub fn partition(&self, storage_key: &str) -> u32 {
        partition_of(storage_key, self.partitions)
    }

    /// The epochs this node holds its partitions at (what its commits are fenced on).
    pub fn held(&self) -> Held {
        self.read().held.clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        self.read().clone()
    }

    /// How many times this node gained a partition or resumed serving.
    pub fn gained(&self) -> u64 {
        self.gained.load(Ordering::Acquire)
    }

    /// Set the view after a balance round. Returns whether this node gained work.
    pub fn set(&self, next: Snapshot) -> bool {
        let mut s = self.now.write().unwrap_or_else(|e| e.into_inner());
        let gained = next.serving
            && ((!s.serving && !next.held.is_empty())
                || next.held.iter().any(|(p, e)| s.held.get(p) != Some(e)));
        *s = next;
        drop(s);
        if gained {
            self.gained.fetch_add(1, Ordering::AcqRel);
        }
        gained
    }

    /// The last view of the cluster.
    pub fn view(&self) -> ClusterView {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_view(&self, view: ClusterView) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
    }

    /// A commit was refused by the fence.
    pub fn count_fenced(&self) {
        self.fenced.fetch_add(1, Ordering::AcqRel);
    }

    /// Commits refused by the fence so far.
    pub fn fenced(&self) -> u64 {
        self.fenced.load(Ordering::Acquire)
    }

    /// Stop taking new work (the lease is about to run out), keeping the epochs.
    pub fn stop_serving(&self) {
        self.now.write().unwrap_or_else(|e| e.into_inner()).serving = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantId;

    #[test]
    fn a_node_runs_only_the_actors_of_partitions_it_holds_while_serving() {
        let p = Placement::new("n1", 4);
        let a = ActorId::new(TenantId("t".into()), "counter", "a");
        let pa = a.partition(4);
        assert_eq!(p.partition(&a.storage_key()), pa);
        assert!(!p.local(&a));
        let mut owners = vec![Some("other:1".to_owned()); 4];
        owners[pa as usize] = Some("me:1".into());
        assert!(p.set(Snapshot {
            held: [(pa, 3)].into(),
            owners: owners.clone(),
            serving: true,
            until: None,
        }));
        assert!(p.local(&a));
        assert_eq!(p.owner(&a), None);
        assert_eq!(p.gained(), 1);
        // The same view again gains nothing.
        assert!(!p.set(Snapshot {
            held: [(pa, 3)].into(),
            owners: owners.clone(),
            serving: true,
            until: None,
        }));
        p.set(Snapshot {
            held: [(pa, 3)].into(),
            owners: owners.clone(),
            serving: true,
            until: Some(std::time::Instant::now()),
        });
        assert!(
            !p.local(&a),
            "past its safe part of the lease, a node takes no work"
        );
        p.stop_serving();
        assert!(!p.local(&a), "a node about to lose its lease takes no work");
        assert_eq!(p.held(), Held::from([(pa, 3)]), "but keeps its epochs");
        // Handed over: the owner is elsewhere.
        let b_owner = (pa + 1) % 4;
        p.set(Snapshot {
            held: [(b_owner, 1)].into(),
            owners: vec![Some("other:1".into()); 4],
            serving: true,
            until: None,
        });
        assert_eq!(p.owner(&a).as_deref(), Some("other:1"));
    }
}

//! Wiring the store: `dwell serve` keeps its durable state in the redb file in the data
//! directory (the default) or in PostgreSQL (`--store postgres://…`). This is the one
//! place that names both backends; the engine takes whichever is opened here. A
//! cluster node (`--node-id`) joins the cluster on PostgreSQL here and keeps its
//! membership (lease, partitions) on a thread of its own ([`join`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dwell_storage_postgres::cluster::Membership;
use dwell_types::placement::{Placement, Snapshot};

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

/// A cluster node's membership, running on a thread of its own (see [`join`]).
pub struct Cluster {
    pub placement: Arc<Placement>,
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Cluster {
    /// Stop taking work and hand every partition back at once (a drained shutdown: the
    /// other nodes claim them at their next round instead of after the lease). Calls
    /// after the first wait for it and do nothing more.
    pub fn leave(&self) {
        self.placement.stop_serving();
        self.stop.store(true, Ordering::Release);
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = thread.take() {
            let _ = t.join();
        }
    }
}

/// Join the cluster on the PostgreSQL at `url` as `node` (reachable at `advertise`):
/// register, claim a fair share of the partitions, and keep doing so on a thread of
/// its own (renew the lease, hand back above the fair share, claim free or expired
/// partitions, refresh who owns what) every tenth of the lease. The node takes work only
/// within two thirds of the lease after its last renewal, so it has stopped before any
/// other node can claim its partitions; its commits are fenced in any case.
pub fn join(
    url: &str,
    node: &str,
    advertise: &str,
    partitions: u32,
    lease: Duration,
) -> Result<(Storage, Cluster), dwell_storage::Error> {
    let (u, n, a) = (url.to_owned(), node.to_owned(), advertise.to_owned());
    let (membership, placement) = std::thread::spawn(move || {
        let mut m = Membership::join(&u, &n, &a, partitions, lease)?;
        let placement = Arc::new(Placement::new(n, m.partitions()));
        round(&mut m, &placement, lease)?;
        Ok::<_, dwell_storage::Error>((m, placement))
    })
    .join()
    .map_err(|_| dwell_storage::Error::Backend("the cluster join thread panicked".into()))??;
    tracing::info!(
        node,
        partitions = placement.partitions(),
        held = placement.held().len(),
        "joined the cluster"
    );
    let (writer, reads) = dwell_storage_postgres::open_member(url, placement.clone(), lease)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (placement, stop, url, node, advertise) = (
            placement.clone(),
            stop.clone(),
            url.to_owned(),
            node.to_owned(),
            advertise.to_owned(),
        );
        std::thread::Builder::new()
            .name("dwell-membership".into())
            .spawn(move || {
                keep(
                    membership, &placement, &stop, &url, &node, &advertise, partitions, lease,
                )
            })
            .map_err(|e| dwell_storage::Error::Backend(e.to_string()))?
    };
    Ok((
        Storage::new(writer, reads),
        Cluster {
            placement,
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
        },
    ))
}

/// One balance round: what this node holds, who owns the rest, until when it serves.
fn round(
    m: &mut Membership,
    placement: &Placement,
    lease: Duration,
) -> Result<(), dwell_storage::Error> {
    let started = Instant::now();
    let held = m.balance()?;
    let view = m.view()?;
    let live: std::collections::HashMap<&str, &str> = view
        .nodes
        .iter()
        .filter(|n| n.live)
        .map(|n| (n.node.as_str(), n.advertise.as_str()))
        .collect();
    let mut owners = vec![None; placement.partitions() as usize];
    for o in &view.owners {
        if let (Some(addr), Some(slot)) = (
            live.get(o.node.as_str()),
            owners.get_mut(o.partition as usize),
        ) {
            *slot = Some((*addr).to_owned());
        }
    }
    if placement.set(Snapshot {
        held,
        owners,
        serving: true,
        until: Some(started + lease * 2 / 3),
    }) {
        tracing::info!(held = placement.held().len(), "this node gained partitions");
    }
    placement.set_view(view);
    Ok(())
}

/// The membership loop (see [`join`]).
#[allow(clippy::too_many_arguments)]
fn keep(
    mut membership: Membership,
    placement: &Placement,
    stop: &AtomicBool,
    url: &str,
    node: &str,
    advertise: &str,
    partitions: u32,
    lease: Duration,
) {
    let every = (lease / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut next = Instant::now() + every;
    loop {
        while Instant::now() < next {
            if stop.load(Ordering::Acquire) {
                match membership.leave() {
                    Ok(()) => tracing::info!("left the cluster: partitions handed over"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hand the partitions over; they move when the lease runs out")
                    }
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(every));
        }
        next = Instant::now() + every;
        if let Err(e) = round(&mut membership, placement, lease) {
            tracing::warn!(error = %e, "cannot renew the lease; retrying");
            if let Ok(m) = Membership::join(url, node, advertise, partitions, lease) {
                membership = m;
            }
        }
    }
}

//! Cluster membership on a real PostgreSQL (a private server): nodes share the
//! partitions fairly and a join or a leave moves no more than it must; a node paused past
//! its lease loses its partitions to another and its late commits are fenced, with
//! nothing of them landing; a node paused in the middle of a commit holds no lock past
//! half its lease (the server ends its transaction), so the others take its partitions
//! and write its actors; the partition count is fixed when the cluster is made.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Server;
use dwell_storage::{Error, Tables};
use dwell_storage_postgres::Postgres;
use dwell_storage_postgres::cluster::{Held, Membership};
use dwell_types::placement::{Placement, Snapshot};
use std::sync::Arc;

/// An actor's storage key (any partition: the zombie and the survivor hold them all).
const ACTOR: &str = "t/counter/a";

/// A placement holding `held` (what a node's membership loop would keep).
fn placed(node: &str, held: &Held) -> Arc<Placement> {
    let p = Arc::new(Placement::new(node, 4));
    p.set(Snapshot {
        held: held.clone(),
        owners: vec![Some(node.to_owned()); 4],
        serving: true,
        until: None,
    });
    p
}

const LEASE: Duration = Duration::from_millis(1500);

fn join(url: &str, node: &str, partitions: u32) -> Membership {
    let advertise = format!("127.0.0.1:{}", 7000 + node.len());
    Membership::join(url, node, &advertise, partitions, LEASE).unwrap()
}

fn set(h: &Held) -> BTreeSet<u32> {
    h.keys().copied().collect()
}

#[test]
fn membership_shares_partitions_fairly_fences_zombies_and_keeps_its_count() {
    let server = Server::start();

    // ---- fair shares; a join and a leave move only what they must
    let url = server.database("cluster");
    let mut a = join(&url, "a", 16);
    assert_eq!(a.partitions(), 16);
    let alone = a.balance().unwrap();
    assert_eq!(set(&alone), (0..16).collect());
    let mut b = join(&url, "b", 16);
    // B finds nothing free until A hands back what is above its share.
    assert!(b.balance().unwrap().is_empty());
    let a_half = a.balance().unwrap();
    assert_eq!(a_half.len(), 8);
    let b_half = b.balance().unwrap();
    assert_eq!(b_half.len(), 8);
    assert!(set(&a_half).is_disjoint(&set(&b_half)));
    // A claim bumps the epoch; what A kept keeps its epoch.
    for (p, e) in &a_half {
        assert_eq!(alone[p], *e, "partition {p} did not move");
    }
    for (p, e) in &b_half {
        assert_eq!(*e, alone[p] + 1, "partition {p} was claimed once");
    }
    // A third node takes its share from both; then B leaves and its share is free at once.
    let mut c = join(&url, "c", 16);
    a.balance().unwrap();
    b.balance().unwrap();
    let c_share = c.balance().unwrap();
    assert_eq!(c_share.len(), 4, "ceil(16/3) = 6 for A and B leaves 4");
    b.leave().unwrap();
    let a_now = a.balance().unwrap();
    let c_now = c.balance().unwrap();
    assert_eq!(a_now.len() + c_now.len(), 16);
    assert_eq!(a_now.len(), 8);
    let view = a.view().unwrap();
    assert_eq!(view.partitions, 16);
    assert_eq!(
        view.nodes
            .iter()
            .map(|n| n.node.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert!(view.nodes.iter().all(|n| n.live && n.lease_left_ms > 0));
    assert!(
        view.owners
            .iter()
            .all(|o| o.live && (o.node == "a" || o.node == "c"))
    );

    // ---- a zombie: paused past its lease, its partitions are taken and it is fenced
    let url = server.database("cluster");
    let mut z = join(&url, "zombie", 4);
    let held = z.balance().unwrap();
    assert_eq!(held.len(), 4);
    let mut zombie_writer =
        Postgres::connect_member(&url, placed("zombie", &held), LEASE / 2).unwrap();
    zombie_writer
        .write(|t| t.put_state(ACTOR, b"from the zombie, in time"))
        .unwrap();
    let mut n = join(&url, "survivor", 4);
    // Before the zombie's lease runs out, nothing of it can be taken.
    assert!(n.balance().unwrap().is_empty());
    std::thread::sleep(LEASE + Duration::from_millis(300));
    let taken = n.balance().unwrap();
    assert_eq!(
        set(&taken),
        set(&held),
        "every partition of the zombie claimed"
    );
    let survivor = placed("survivor", &taken);
    let mut writer = Postgres::connect_member(&url, survivor.clone(), LEASE / 2).unwrap();
    // The zombie wakes up: its commit is refused, and nothing of it lands.
    let late = zombie_writer.write(|t| t.put_state(ACTOR, b"from the zombie, late"));
    assert_eq!(late.err(), Some(Error::Fenced));
    let seen = writer.write(|t| t.state(ACTOR)).unwrap();
    assert_eq!(seen.as_deref(), Some(&b"from the zombie, in time"[..]));
    // The new owner writes; a write to no actor (node settings) is not fenced; a write
    // to a partition the writer does not hold is.
    writer
        .write(|t| t.put_state(ACTOR, b"from the survivor"))
        .unwrap();
    writer.write(|t| t.put_meta("k", b"v")).unwrap();
    survivor.set(Snapshot {
        held: Held::new(),
        owners: vec![None; 4],
        serving: true,
        until: None,
    });
    assert_eq!(
        writer
            .write(|t| t.put_state(ACTOR, b"after handing over"))
            .err(),
        Some(Error::Fenced)
    );
    assert_eq!(survivor.fenced(), 1);
    // Renewing does not give the partitions back: it holds nothing now.
    z.renew().unwrap();
    assert!(z.held().unwrap().is_empty());

    // ---- the partition count is the cluster's, whatever a later node asks for
    let other = join(&url, "late", 64);
    assert_eq!(other.partitions(), 4);
}

#[test]
fn a_node_paused_mid_commit_keeps_no_lock_past_half_its_lease() {
    let server = Server::start();
    let url = server.database("paused");
    let mut z = join(&url, "zombie", 4);
    let held = z.balance().unwrap();
    assert_eq!(held.len(), 4);
    let mut zombie_writer =
        Postgres::connect_member(&url, placed("zombie", &held), LEASE / 2).unwrap();
    zombie_writer
        .write(|t| t.put_state(ACTOR, b"from the zombie, in time"))
        .unwrap();
    // The zombie pauses inside a commit: it has updated the actor's state row (a scan
    // sends the held writes), then nothing for longer than its lease.
    let paused = std::thread::spawn(move || {
        let out = zombie_writer.write(|t| {
            t.put_state(ACTOR, b"from the paused zombie")?;
            t.actor_keys("", 10)?;
            std::thread::sleep(LEASE * 2);
            t.put_state(ACTOR, b"from the paused zombie, after")
        });
        (out, zombie_writer)
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut n = join(&url, "survivor", 4);
    let t0 = std::time::Instant::now();
    let taken = loop {
        let taken = n.balance().unwrap();
        if taken.len() == 4 {
            break taken;
        }
        assert!(
            t0.elapsed() < LEASE * 2,
            "the zombie's partitions are claimable once its lease ran out: {taken:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The new owner writes the actor the paused zombie had updated: its row lock went
    // with the zombie's transaction.
    let mut writer = Postgres::connect_member(&url, placed("survivor", &taken), LEASE / 2).unwrap();
    let seen = writer.write(|t| t.state(ACTOR)).unwrap();
    assert_eq!(seen.as_deref(), Some(&b"from the zombie, in time"[..]));
    writer
        .write(|t| t.put_state(ACTOR, b"from the survivor"))
        .unwrap();
    let claimed = t0.elapsed();
    assert!(claimed < LEASE * 2, "claimed and written after {claimed:?}");
    // The zombie wakes up: its transaction is gone, nothing of it landed.
    let (out, zombie_writer) = paused.join().unwrap();
    assert_eq!(
        out.err(),
        Some(Error::Fenced),
        "the paused commit is refused: the server ended it"
    );
    // Connected again, it is fenced.
    assert!(zombie_writer.is_closed());
    let mut zombie_writer = zombie_writer.resume(&url).unwrap();
    assert_eq!(
        zombie_writer
            .write(|t| t.put_state(ACTOR, b"from the zombie, late"))
            .err(),
        Some(Error::Fenced)
    );
    let seen = writer.write(|t| t.state(ACTOR)).unwrap();
    assert_eq!(seen.as_deref(), Some(&b"from the survivor"[..]));
}

//! The history logs on a real file: a hot actor's history stays within its bound while a
//! quiet actor's survives the sweeps that move it, and a deleted actor's entries never
//! show under a new actor of that name.

use dwell_core::conformance::{Backend, HISTORY, Rig, TENANT, actor, done, event};
use dwell_core::ops::AdminOp;
use dwell_storage_redb::{Redb, RedbReads};

struct OnFile {
    _dir: tempfile::TempDir,
    redb: Redb,
}

impl Backend for OnFile {
    type Tables<'t> = <Redb as dwell_storage::Backend>::Tables<'t>;
    fn write<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut Self::Tables<'t>) -> Result<R, dwell_storage::Error>,
    ) -> Result<R, dwell_storage::Error> {
        dwell_storage::Backend::write(&mut self.redb, f)
    }
}

const SLACK: u64 = 16;

fn rig() -> (Rig<OnFile>, RedbReads) {
    let dir = tempfile::tempdir().unwrap();
    let (redb, reads) = dwell_storage_redb::open(dir.path()).unwrap();
    redb.set_history_slack(SLACK);
    (Rig::new(OnFile { _dir: dir, redb }), reads)
}

/// Run turn `seq` of `a`, leaving state `s{seq}`.
fn turn(r: &mut Rig<OnFile>, a: &dwell_types::ActorId, seq: u64) {
    assert!(matches!(
        r.enqueue(a, event(b"\x80")),
        dwell_core::ops::EnqueueAck::Accepted { .. }
    ));
    r.commit(a, seq, done(format!("s{seq}").as_bytes(), vec![]));
}

fn seqs(reads: &RedbReads, key: &str) -> Vec<u64> {
    use dwell_storage::Reads;
    reads
        .history(key, None, 1000)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect()
}

fn state(reads: &RedbReads, key: &str, seq: u64) -> Option<String> {
    use dwell_storage::Reads;
    let s = reads.history_state(key, seq).unwrap()?;
    Some(String::from_utf8(s).unwrap())
}

#[test]
fn a_hot_actor_stays_within_its_bound_and_a_quiet_ones_history_survives() {
    let (mut r, reads) = rig();
    let (quiet, hot) = (actor(TENANT, "quiet"), actor(TENANT, "hot"));
    let (qk, hk) = (quiet.storage_key(), hot.storage_key());
    for seq in 0..3 {
        turn(&mut r, &quiet, seq);
    }
    // Live: the quiet actor's 3 records and 2 states, the hot one's 4 and 2.
    let bound = |live: u64| 2 * live + SLACK + 4 + 64;
    let mut largest = (0, 0);
    for seq in 0..1500 {
        turn(&mut r, &hot, seq);
        let (turns, states) = reads.history_log_len();
        largest = (largest.0.max(turns), largest.1.max(states));
    }
    assert!(largest.0 <= bound(7), "turn log reached {}", largest.0);
    assert!(largest.1 <= bound(4), "state log reached {}", largest.1);
    // 1503 entries went through a log of at most ~100: the quiet actor's chain was
    // moved several times, and is whole.
    assert_eq!(seqs(&reads, &hk), [1499, 1498, 1497, 1496]);
    assert_eq!(state(&reads, &hk, 1499).as_deref(), Some("s1499"));
    assert_eq!(state(&reads, &hk, 1498).as_deref(), Some("s1498"));
    assert_eq!(state(&reads, &hk, 1497), None);
    assert_eq!(seqs(&reads, &qk), [2, 1, 0]);
    assert_eq!(state(&reads, &qk, 2).as_deref(), Some("s2"));
    assert_eq!(state(&reads, &qk, 1).as_deref(), Some("s1"));
    assert_eq!(state(&reads, &qk, 0), None, "beyond the kept states");

    // Deleted, made again, and swept past: the new actor shows only its own turns,
    // though the old entries (same key, same seqs) may still be in the log.
    r.tx(|tx| {
        tx.admin(AdminOp::DeleteActor {
            actor: quiet.clone(),
        })
    });
    turn(&mut r, &quiet, 0);
    assert_eq!(seqs(&reads, &qk), [0]);
    for seq in 1500..1700 {
        turn(&mut r, &hot, seq);
    }
    assert_eq!(seqs(&reads, &qk), [0]);
    assert_eq!(state(&reads, &qk, 0).as_deref(), Some("s0"));
    assert_eq!(seqs(&reads, &hk), [1699, 1698, 1697, 1696]);
    let (turns, _) = reads.history_log_len();
    assert!(turns <= bound(5), "turn log at {turns}");
    assert_eq!(
        HISTORY.turns, 4,
        "the bounds above assume the suite's retention"
    );
}

//! Cluster membership on PostgreSQL: the nodes, their leases, and which node owns each of
//! the cluster's partitions at which epoch. Every time is the database's (`now()`), never
//! a node's clock, so nodes whose clocks disagree still agree on who holds a lease.
//!
//! - The partition count is fixed when the first node makes the cluster (`cluster` row);
//!   a node that asks for another count gets the cluster's.
//! - A node registers in `nodes` with a lease it renews ([`Membership::renew`]). A lease
//!   that ran out makes the node's partitions claimable; nothing else does, except the
//!   owner handing a partition back ([`Membership::balance`] above its share,
//!   [`Membership::leave`] on shutdown).
//! - Claiming a partition bumps its epoch. A commit checks, in its own transaction, that
//!   each partition it writes is still at the epoch its node claimed ([`fence`]: the rows
//!   are read `FOR SHARE`, so a claim waits for the commit and the commit for the claim):
//!   a node paused past its lease whose partitions were taken can never commit after.
//!   A paused node's open transaction does not hold those rows either: every cluster
//!   session has the server end a transaction idle for half the lease.
//! - [`Membership::balance`] keeps a node at its fair share, `ceil(partitions / live
//!   nodes)`: it hands back what is above it and claims free or expired partitions up to
//!   it, so a join or a leave moves about as few partitions as it must.

use std::time::Duration;

use dwell_storage::Error;
use postgres::{Client, GenericClient, NoTls};

use crate::{SCHEMA, pg_error};

type R<T> = Result<T, Error>;

pub use dwell_types::placement::{ClusterView as View, Held, NodeView as Node, OwnerView as Owner};

/// This node's membership: one connection of its own.
pub struct Membership {
    client: Client,
    node: String,
    lease: Duration,
    partitions: u32,
}

/// A lease in the interval type PostgreSQL reads from a string.
fn interval(d: Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}

impl Membership {
    /// Join the cluster on `url` as `node` (reachable at `advertise`), making it with
    /// `partitions` partitions if it does not exist yet, with a lease of `lease`.
    pub fn join(
        url: &str,
        node: &str,
        advertise: &str,
        partitions: u32,
        lease: Duration,
    ) -> R<Membership> {
        let mut client = Client::connect(url, NoTls).map_err(pg_error)?;
        client.batch_execute(SCHEMA).map_err(pg_error)?;
        // A node paused mid-round must not keep partition rows locked past its lease.
        crate::bound_idle_transactions(&mut client, lease / 2)?;
        let mut txn = client.transaction().map_err(pg_error)?;
        txn.execute(
            "INSERT INTO cluster (id, partitions) VALUES (1, $1) ON CONFLICT DO NOTHING",
            &[&(partitions.max(1) as i32)],
        )
        .map_err(pg_error)?;
        let count: i32 = txn
            .query_one("SELECT partitions FROM cluster WHERE id = 1", &[])
            .map_err(pg_error)?
            .get(0);
        txn.execute(
            "INSERT INTO partitions (partition, epoch, owner) \
             SELECT g, 0, '' FROM generate_series(0, $1 - 1) g ON CONFLICT DO NOTHING",
            &[&count],
        )
        .map_err(pg_error)?;
        txn.execute(
            "INSERT INTO nodes (node, advertise, lease_until) VALUES ($1, $2, now() + $3::text::interval) \
             ON CONFLICT (node) DO UPDATE SET advertise = $2, lease_until = now() + $3::text::interval",
            &[&node, &advertise, &interval(lease)],
        )
        .map_err(pg_error)?;
        txn.commit().map_err(pg_error)?;
        Ok(Membership {
            client,
            node: node.to_owned(),
            lease,
            partitions: count as u32,
        })
    }

    /// The cluster's partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Renew this node's lease; how long it now runs. A node whose lease had run out
    /// renews too, but the partitions taken from it meanwhile stay taken (its epochs
    /// are stale: its commits to them are fenced).
    pub fn renew(&mut self) -> R<Duration> {
        let row = self
            .client
            .query_one(
                "INSERT INTO nodes (node, advertise, lease_until) VALUES ($1, '', now() + $2::text::interval) \
                 ON CONFLICT (node) DO UPDATE SET lease_until = now() + $2::text::interval \
                 RETURNING (extract(epoch FROM lease_until - now()) * 1000)::bigint",
                &[&self.node, &interval(self.lease)],
            )
            .map_err(pg_error)?;
        let ms: i64 = row.get(0);
        Ok(Duration::from_millis(ms.max(0) as u64))
    }

    /// The partitions this node holds now, at their epochs.
    pub fn held(&mut self) -> R<Held> {
        held_by(&mut self.client, &self.node)
    }

    /// Renew the lease, hand back what is above this node's fair share and claim free or
    /// expired partitions up to it. Returns what it holds then.
    pub fn balance(&mut self) -> R<Held> {
        self.renew()?;
        let mut txn = self.client.transaction().map_err(pg_error)?;
        let live: i64 = txn
            .query_one("SELECT count(*) FROM nodes WHERE lease_until > now()", &[])
            .map_err(pg_error)?
            .get(0);
        let share = u64::from(self.partitions).div_ceil(live.max(1) as u64) as i64;
        let held = held_by(&mut txn, &self.node)?;
        let have = held.len() as i64;
        if have > share {
            let extra: Vec<i32> = held
                .keys()
                .rev()
                .take((have - share) as usize)
                .map(|p| *p as i32)
                .collect();
            txn.execute(
                "UPDATE partitions SET owner = '' WHERE owner = $1 AND partition = ANY($2)",
                &[&self.node, &extra],
            )
            .map_err(pg_error)?;
        } else if have < share {
            // Free, or owned by a node whose lease ran out; rows another claimer holds
            // locked are skipped, and a row claimed meanwhile is checked again.
            txn.execute(
                "UPDATE partitions SET epoch = epoch + 1, owner = $1 WHERE partition IN ( \
                   SELECT q.partition FROM partitions q \
                   WHERE q.owner = '' OR NOT EXISTS ( \
                     SELECT 1 FROM nodes n WHERE n.node = q.owner AND n.lease_until > now()) \
                   ORDER BY q.partition LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[&self.node, &(share - have)],
            )
            .map_err(pg_error)?;
        }
        let held = held_by(&mut txn, &self.node)?;
        txn.commit().map_err(pg_error)?;
        Ok(held)
    }

    /// Leave: hand back every partition and drop this node's row (a drained shutdown;
    /// the others claim the partitions at once instead of after the lease).
    pub fn leave(&mut self) -> R<()> {
        let mut txn = self.client.transaction().map_err(pg_error)?;
        txn.execute(
            "UPDATE partitions SET owner = '' WHERE owner = $1",
            &[&self.node],
        )
        .map_err(pg_error)?;
        txn.execute("DELETE FROM nodes WHERE node = $1", &[&self.node])
            .map_err(pg_error)?;
        txn.commit().map_err(pg_error)
    }

    /// Nodes, leases and owners, as one snapshot.
    pub fn view(&mut self) -> R<View> {
        let mut txn = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg_error)?;
        let nodes = txn
            .query(
                "SELECT node, advertise, lease_until > now(), \
                 (extract(epoch FROM lease_until - now()) * 1000)::bigint \
                 FROM nodes ORDER BY node",
                &[],
            )
            .map_err(pg_error)?
            .into_iter()
            .map(|r| Node {
                node: r.get(0),
                advertise: r.get(1),
                live: r.get(2),
                lease_left_ms: r.get(3),
            })
            .collect();
        let owners = txn
            .query(
                "SELECT p.partition, p.epoch, p.owner, \
                 EXISTS (SELECT 1 FROM nodes n WHERE n.node = p.owner AND n.lease_until > now()) \
                 FROM partitions p ORDER BY p.partition",
                &[],
            )
            .map_err(pg_error)?
            .into_iter()
            .map(|r| Owner {
                partition: r.get::<_, i32>(0) as u32,
                epoch: r.get(1),
                node: r.get(2),
                live: r.get(3),
            })
            .collect();
        txn.commit().map_err(pg_error)?;
        Ok(View {
            partitions: self.partitions,
            nodes,
            owners,
        })
    }
}

fn held_by(c: &mut impl GenericClient, node: &str) -> R<Held> {
    Ok(c.query(
        "SELECT partition, epoch FROM partitions WHERE owner = $1",
        &[&node],
    )
    .map_err(pg_error)?
    .into_iter()
    .map(|r| (r.get::<_, i32>(0) as u32, r.get(1)))
    .collect())
}

/// The statement [`fence`] runs (prepare it once per connection).
pub const FENCE: &str =
    "SELECT partition, epoch FROM partitions WHERE partition = ANY($1) FOR SHARE";

/// In a write transaction, before its writes: every partition in `held` is still at the
/// epoch this node claimed it at, else [`Error::Fenced`]. The rows stay locked `FOR
/// SHARE` until the transaction ends, so no claim can slip in before the commit.
/// `statement` is [`FENCE`], as text or prepared.
pub fn fence<S>(txn: &mut impl GenericClient, statement: &S, held: &Held) -> R<()>
where
    S: postgres::ToStatement + ?Sized,
{
    let partitions: Vec<i32> = held.keys().map(|p| *p as i32).collect();
    let current: Held = txn
        .query(statement, &[&partitions])
        .map_err(pg_error)?
        .into_iter()
        .map(|r| (r.get::<_, i32>(0) as u32, r.get(1)))
        .collect();
    if current == *held {
        Ok(())
    } else {
        Err(Error::Fenced)
    }
}

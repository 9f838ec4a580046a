//! A cluster node's side of the engine: it works only for the actors of partitions it
//! holds ([`Placement`], kept up to date by the node's membership loop, outside the
//! engine). This module owns what that takes beyond the filters in the workers:
//!
//! - when the node gains partitions (or starts serving again), it looks for the work it
//!   now owns: actors with mail, timers (loaded again from the table, so overdue ones
//!   fire at once), due deliveries;
//! - the inbox pump: messages other nodes' actors sent to this node's actors wait in
//!   the inbox until this node moves them into mailboxes, each in one commit;
//! - shared configuration: tenants, keys and modules live in the shared store, and a
//!   change made through another node is picked up here within a second — a tenant
//!   deleted through another node stops here too, and this node purges its share.

use std::sync::Arc;
use std::time::Duration;

use dwell_types::placement::Placement;

use super::{Inner, runner};

/// How often the node looks at the inbox and the shared configuration.
const INBOX_EVERY: Duration = Duration::from_millis(50);
const CONFIG_EVERY: Duration = Duration::from_millis(500);
/// Inbox messages moved per commit.
const INBOX_BATCH: usize = 512;

pub(super) fn start(inner: &Arc<Inner>, placement: Arc<Placement>) {
    inner
        .rt
        .spawn(watch_gains(Arc::downgrade(inner), placement.clone()));
    inner.rt.spawn(pump_inbox(Arc::downgrade(inner), placement));
    inner.rt.spawn(refresh_config(Arc::downgrade(inner)));
}

/// Look for work each time this node gains a partition.
async fn watch_gains(inner: std::sync::Weak<Inner>, placement: Arc<Placement>) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(inner) = inner.upgrade() else { return };
        let now = placement.gained();
        if now == seen {
            continue;
        }
        seen = now;
        match inner.store.ready_actors() {
            Ok(ready) => {
                let mine: Vec<_> = ready.into_iter().filter(|a| placement.local(a)).collect();
                tracing::info!(
                    partitions = placement.held().len(),
                    actors_with_mail = mine.len(),
                    "took over partitions"
                );
                for actor in mine {
                    runner::wake(&inner, actor);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot look for mail after a takeover");
                seen = 0;
            }
        }
        inner.schedule.reload();
        inner.timer_wake.notify_one();
        inner.outbox_wake.notify_one();
    }
}

/// Move inbox messages for this node's actors into their mailboxes.
async fn pump_inbox(inner: std::sync::Weak<Inner>, placement: Arc<Placement>) {
    loop {
        tokio::time::sleep(INBOX_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let mut after = None;
        loop {
            let page = match inner.store.inbox(after, INBOX_BATCH * 4) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the inbox");
                    break;
                }
            };
            let full = page.len() == INBOX_BATCH * 4;
            after = page.last().map(|(id, _)| *id);
            let mine: Vec<u64> = page
                .into_iter()
                .filter(|(_, key)| placement.local_key(key))
                .map(|(id, _)| id)
                .collect();
            for ids in mine.chunks(INBOX_BATCH) {
                if let Err(e) = inner.store.deliver_inbox(ids.to_vec()).await {
                    tracing::warn!(error = %e, "cannot deliver inbox messages");
                    break;
                }
            }
            if !full {
                break;
            }
        }
    }
}

/// Keep tenants, keys and modules as the shared store has them.
async fn refresh_config(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(CONFIG_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = sync_config(&inner) {
            tracing::warn!(error = %e, "cannot read the shared configuration");
        }
    }
}

/// Read tenants, keys, modules and purges from the shared store now.
pub(super) fn sync_config(inner: &Arc<Inner>) -> Result<(), crate::Error> {
    let now = inner.clock.now_ms();
    let mut tenants = Vec::new();
    for (name, mut rec) in inner.store.tenants()? {
        rec.webhook_secret = inner
            .sealer
            .open(&name, &rec.webhook_secret)
            .map_err(crate::Error::Setup)?;
        tenants.push((name, rec));
    }
    let keys = inner.store.keys()?;
    let gone = inner.tenants.sync(tenants, &keys, now);
    for id in gone {
        inner.registry.forget_tenant(&id);
        inner.warm.forget_tenant(&id);
        inner.scheduler.forget_tenant(&id);
    }
    inner.registry.replace(&inner.store)?;
    // Deleted tenants: each node purges the actors it holds (and any node the rest).
    for id in inner.store.purges()? {
        super::start_purge(inner, id);
    }
    Ok(())
}

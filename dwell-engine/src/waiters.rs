//! Callers waiting for a request to settle (sync calls and long-polls). Settling happens
//! from the post-commit hook, so a waiter never sees a result that is not durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::{RequestId, RequestStatus};

#[derive(Default)]
pub struct Waiters {
    map: Arc<Mutex<HashMap<RequestId, Arc<Notify>>>>,
}

/// A registration for one request; dropping it cleans up.
pub struct Watch {
    id: RequestId,
    notify: Arc<Notify>,
    map: Arc<Mutex<HashMap<RequestId, Arc<Notify>>>>,
}

impl Watch {
    /// Wait until the request settles or `wait` passes. `check` reads the durable
    /// record and says whether it is already settled; it runs after the wake-up is armed,
    /// so a settlement between the check and the wait is never missed.
    pub async fn wait_until(&self, wait: Duration, check: impl FnOnce() -> bool) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if check() {
            return;
        }
        let _ = tokio::time::timeout(wait, notified).await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the last watcher of an id removes the entry.
        if let Some(n) = map.get(&self.id)
            && Arc::ptr_eq(n, &self.notify)
            && Arc::strong_count(&self.notify) <= 2
        {
            map.remove(&self.id);
        }
    }
}

impl Waiters {
    pub fn watch(&self, id: RequestId) -> Watch {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let notify = map.entry(id).or_default().clone();
        Watch {
            id,
            notify,
            map: self.map.clone(),
        }
    }

    pub fn settle(&self, id: RequestId, _status: RequestStatus) {
        let n = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&id).cloned()
        };
        if let Some(n) = n {
            // notify_waiters wakes current waiters; notify_one stores a permit for a
            // watcher that registered but has not started waiting yet.
            n.notify_waiters();
            n.notify_one();
        }
    }
}

//! The roles. Each is a [`crate::node::RoleHandler`] that owns its sled trees.

pub mod acquirer;
pub mod courier;
pub mod intermediary;
pub mod kiosk;
pub mod lab;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use printmesh_protocol::OrderId;

/// One async lock per order id, so concurrent duplicates of a request run one after
/// the other and the second sees the first's answer. Entries are dropped when no
/// request holds them.
#[derive(Default)]
pub struct OrderLocks {
    locks: Mutex<HashMap<OrderId, Arc<tokio::sync::Mutex<()>>>>,
}

impl OrderLocks {
    pub async fn lock(&self, id: OrderId) -> OrderGuard<'_> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        OrderGuard {
            locks: self,
            id,
            _guard: Some(guard),
        }
    }
}

pub struct OrderGuard<'a> {
    locks: &'a OrderLocks,
    id: OrderId,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for OrderGuard<'_> {
    fn drop(&mut self) {
        self._guard.take();
        let mut map = self.locks.locks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = map.get(&self.id) {
            // Only the map holds it: nobody is waiting.
            if Arc::strong_count(lock) == 1 {
                map.remove(&self.id);
            }
        }
    }
}

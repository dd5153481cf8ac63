//! One request at a time per container: a pod's own DEL and a `/delegate`
//! for the same container both rewrite its cache file, and a runtime retry
//! may overlap the request it retries. Requests for other containers never
//! wait on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct PerContainer {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PerContainer {
    /// Waits for the container's turn; `None` for requests that name no
    /// container (STATUS, GC).
    pub async fn turn(&self, container: &str) -> Option<OwnedMutexGuard<()>> {
        if container.is_empty() {
            return None;
        }
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Forget the containers nobody holds or waits for.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(container.to_string()).or_default().clone()
        };
        Some(lock.lock_owned().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn same_container_waits_others_do_not() {
        let p = PerContainer::default();
        let first = p.turn("a").await.unwrap();
        let other = tokio::time::timeout(Duration::from_millis(50), p.turn("b")).await;
        assert!(other.is_ok(), "another container runs at once");
        let same = tokio::time::timeout(Duration::from_millis(50), p.turn("a")).await;
        assert!(same.is_err(), "the same container waits");
        drop((first, other));
        assert!(p.turn("a").await.is_some());
        assert!(p.turn("").await.is_none());
        // Nothing held: the map does not keep every container ever seen.
        p.turn("c").await;
        assert!(p.locks.lock().unwrap().len() <= 1);
    }
}

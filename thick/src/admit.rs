//! A bound on requests in flight: a burst of pods queues instead of growing
//! memory without bound, and a request that waits too long is told to try
//! again (code 11) rather than hanging the kubelet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    timeout: Duration,
    queued: AtomicUsize,
}

impl Admission {
    pub fn new(limit: usize, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            timeout,
            queued: AtomicUsize::new(0),
        }
    }

    /// A turn, or why there is none within the timeout.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, String> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let got = tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned()).await;
        let waiting = self.queued.fetch_sub(1, Ordering::Relaxed) - 1;
        match got {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(format!(
                "multus-daemon is busy: {} requests in flight, {waiting} more waiting, none finished within {} ms",
                self.limit,
                self.timeout.as_millis()
            )),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn waits_then_gives_up() {
        let a = Admission::new(1, Duration::from_millis(50));
        let held = a.enter().await.unwrap();
        assert_eq!(a.in_flight(), 1);
        let e = a.enter().await.unwrap_err();
        assert!(e.contains("busy") && e.contains("50 ms"), "{e}");
        drop(held);
        assert!(a.enter().await.is_ok());
    }
}

//! A bound on requests in flight: a burst of pods queues instead of growing
//! memory without bound, and a request that waits too long is told to try
//! again (code 11) rather than hanging the kubelet. A request answered at
//! its deadline gives its turn back while its work still runs (it cannot be
//! stopped); such requests are counted until they end, and the daemon is
//! not ready while there are as many of them as requests may run at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    timeout: Duration,
    queued: AtomicUsize,
    abandoned: Arc<AtomicUsize>,
}

/// A request answered past its deadline whose work still runs: it holds no
/// admission turn, but counts as abandoned until dropped (when the work
/// ends).
#[must_use = "the request counts as abandoned until this is dropped"]
pub struct Abandoned(Arc<AtomicUsize>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn new(limit: usize, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            timeout,
            queued: AtomicUsize::new(0),
            abandoned: Arc::default(),
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

    /// Requests holding a turn (not those abandoned at their deadline).
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Gives `permit`'s turn to the next request while the work it admitted
    /// keeps running; that work counts as abandoned until the returned
    /// guard is dropped.
    pub fn abandon(&self, permit: OwnedSemaphorePermit) -> Abandoned {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
        drop(permit);
        Abandoned(self.abandoned.clone())
    }

    /// Requests answered at their deadline whose work still runs.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Why the daemon is not ready, if as many requests as may run at once
    /// (`connectionLimit`) are abandoned and still running: whatever holds
    /// them (threads, wasm instances from a pool sized twice the limit, a
    /// stuck API) is likely to hold the next ones too.
    pub fn saturated(&self) -> Option<String> {
        let n = self.abandoned();
        (n >= self.limit).then(|| {
            format!(
                "{n} requests past their deadline (requestTimeoutMs) are still running, connectionLimit is {}",
                self.limit
            )
        })
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

    #[tokio::test(flavor = "current_thread")]
    async fn an_abandoned_request_frees_its_turn_and_counts_until_it_ends() {
        let a = Admission::new(2, Duration::from_millis(50));
        let first = a.abandon(a.enter().await.unwrap());
        assert_eq!((a.in_flight(), a.abandoned()), (0, 1));
        assert!(a.saturated().is_none());
        let second = a.abandon(a.enter().await.unwrap());
        // Both turns are free again...
        let (x, y) = (a.enter().await.unwrap(), a.enter().await.unwrap());
        assert_eq!(a.in_flight(), 2);
        drop((x, y));
        // ...but as many abandoned as may run: not ready.
        let why = a.saturated().unwrap();
        assert!(
            why.contains("2 requests") && why.contains("connectionLimit is 2"),
            "{why}"
        );
        drop(first);
        assert_eq!(a.abandoned(), 1);
        assert!(a.saturated().is_none());
        drop(second);
        assert_eq!(a.abandoned(), 0);
    }
}

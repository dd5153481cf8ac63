//! Identical requests in flight at once, answered once: the first caller
//! (the leader) makes the request, the others wait for its answer. For
//! reads whose contract already allows an answer a moment old (the API
//! server's watch cache): a node's pods started together then read a
//! shared object once, not once each.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The requests in flight, by key.
pub struct Flights<K, V> {
    flying: Mutex<HashMap<K, Arc<Flight<V>>>>,
}

struct Flight<V> {
    /// `None` while flying; `Some(None)` when the leader ended without an
    /// answer (it panicked): a waiter then asks for itself.
    answer: Mutex<Option<Option<V>>>,
    landed: Condvar,
}

/// A waiter's budget ran out before the leader's answer came.
#[derive(Debug, PartialEq, Eq)]
pub struct Late;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            flying: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Flights<K, V> {
    /// `ask`'s answer for `key`: asked here if no identical request is in
    /// flight, else the one in flight's, waited for at most `wait`. An
    /// answer `shared` refuses (one that says more about the leader's call
    /// than about the object: its own deadline spent) is not taken: the
    /// waiter asks again, leading a new flight or joining one, within
    /// what is left of its wait.
    pub fn join(
        &self,
        key: K,
        wait: Duration,
        shared: impl Fn(&V) -> bool,
        mut ask: impl FnMut() -> V,
    ) -> Result<V, Late> {
        let until = Instant::now() + wait;
        loop {
            let (flight, leader) = {
                let mut flying = lock(&self.flying);
                match flying.get(&key) {
                    Some(f) => (f.clone(), false),
                    None => {
                        let f = Arc::new(Flight {
                            answer: Mutex::new(None),
                            landed: Condvar::new(),
                        });
                        flying.insert(key.clone(), f.clone());
                        (f, true)
                    }
                }
            };
            if leader {
                // Landed on every way out, a panic included, so no waiter
                // waits past its budget for an answer that never comes.
                let landing = Landing {
                    flights: self,
                    key,
                    flight: &flight,
                    answer: None,
                };
                return Ok(landing.fly(ask));
            }
            // What the daemon's metrics count: requests not sent.
            tracing::debug!("joined a request in flight");
            let mut answer = lock(&flight.answer);
            loop {
                match &*answer {
                    Some(Some(v)) if shared(v) => return Ok(v.clone()),
                    // Not for this waiter: ask again (below).
                    Some(Some(_)) => break,
                    Some(None) => {
                        drop(answer);
                        return Ok(ask());
                    }
                    None => {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(Late);
                        }
                        answer = flight
                            .landed
                            .wait_timeout(answer, left)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
            }
            if Instant::now() >= until {
                return Err(Late);
            }
        }
    }
}

/// A leader's flight, landed (its answer given to the waiters, its key
/// freed for the next request) when dropped.
struct Landing<'a, K: Eq + Hash, V> {
    flights: &'a Flights<K, V>,
    key: K,
    flight: &'a Flight<V>,
    answer: Option<V>,
}

impl<K: Eq + Hash, V: Clone> Landing<'_, K, V> {
    fn fly(mut self, ask: impl FnOnce() -> V) -> V {
        let v = ask();
        self.answer = Some(v.clone());
        v
    }
}

impl<K: Eq + Hash, V> Drop for Landing<'_, K, V> {
    fn drop(&mut self) {
        // Freed before landing: a request made after this answer is a new
        // flight, never one joining a finished one.
        lock(&self.flights.flying).remove(&self.key);
        *lock(&self.flight.answer) = Some(self.answer.take());
        self.flight.landed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    fn all(_: &u32) -> bool {
        true
    }

    /// Callers arriving while a request flies get its answer; one arriving
    /// after it landed asks again.
    #[test]
    fn concurrent_callers_share_one_request() {
        let flights: Flights<&str, u32> = Flights::default();
        let asked = AtomicUsize::new(0);
        let started = Barrier::new(2);
        let ask = || {
            asked.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            7
        };
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                flights.join("nsp", Duration::from_secs(5), all, || {
                    started.wait();
                    ask()
                })
            });
            started.wait();
            let waiters: Vec<_> = (0..8)
                .map(|_| s.spawn(|| flights.join("nsp", Duration::from_secs(5), all, ask)))
                .collect();
            assert_eq!(leader.join().unwrap(), Ok(7));
            for w in waiters {
                assert_eq!(w.join().unwrap(), Ok(7));
            }
        });
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one request for nine calls"
        );
        assert_eq!(flights.join("nsp", Duration::from_secs(1), all, ask), Ok(7));
        assert_eq!(asked.load(Ordering::SeqCst), 2, "a later call asks again");
        // Another key is another request.
        assert_eq!(
            flights.join("other", Duration::from_secs(1), all, || 9),
            Ok(9)
        );
    }

    /// A waiter gives up at its own budget; a leader that panics leaves
    /// its waiters to ask for themselves, never waiting for nothing.
    #[test]
    fn a_waiter_never_waits_past_its_budget_or_for_a_dead_leader() {
        let flights: Flights<&str, u32> = Flights::default();
        let started = Barrier::new(2);
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                flights.join("k", Duration::from_secs(5), all, || {
                    started.wait();
                    std::thread::sleep(Duration::from_millis(300));
                    1
                })
            });
            started.wait();
            assert_eq!(
                flights.join("k", Duration::from_millis(20), all, || 2),
                Err(Late)
            );
            assert_eq!(leader.join().unwrap(), Ok(1));
        });
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                flights.join("k", Duration::from_secs(5), all, || -> u32 {
                    started.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("the leader's request panicked")
                })
            });
            started.wait();
            assert_eq!(flights.join("k", Duration::from_secs(5), all, || 3), Ok(3));
            assert!(leader.join().is_err());
        });
        assert!(lock(&flights.flying).is_empty());
    }

    /// An answer that is the leader's own (its deadline spent) is not
    /// served: the waiter asks for itself and gets its own.
    #[test]
    fn a_leaders_own_failure_is_not_served() {
        let flights: Flights<&str, Result<u32, &str>> = Flights::default();
        let started = Barrier::new(2);
        let shared = |v: &Result<u32, &str>| *v != Err("leader's deadline");
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                flights.join("k", Duration::from_secs(5), shared, || {
                    started.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    Err("leader's deadline")
                })
            });
            started.wait();
            assert_eq!(
                flights.join("k", Duration::from_secs(5), shared, || Ok(4)),
                Ok(Ok(4))
            );
            assert_eq!(leader.join().unwrap(), Ok(Err("leader's deadline")));
        });
    }
}

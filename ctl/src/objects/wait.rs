//! How the object loops (plugin sync on each node, plugin aggregate)
//! wait: for a change in a watch, and after a failed write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::ApiResource;
use multus::k8s::client::{Kube, Watch};

use crate::install::watch::{log_to_stderr, sleep_unless, stop_on_signals};

/// What a long-running object loop starts with: logs on stderr, an API
/// client (`kubeconfig`, or the pod's service account), and a flag that
/// SIGTERM and SIGINT raise. The exit code on failure, the message
/// printed naming `cmd`.
pub fn start(cmd: &str, kubeconfig: Option<&PathBuf>) -> Result<(Kube, Arc<AtomicBool>), i32> {
    log_to_stderr();
    let timeout = Duration::from_secs(10);
    let kube = match kubeconfig {
        Some(k) => Kube::new(k, timeout),
        None => Kube::in_cluster(timeout),
    }
    .map_err(|e| {
        eprintln!("multusctl {cmd}: {e}");
        2
    })?;
    Ok((kube, stop_on_signals(cmd)?))
}

/// How long to wait before a pass whose write failed is tried again:
/// doubling from 1 s to 30 s, each wait a random part of it, so that the
/// writers refused at once (an API server behind with a burst of writes)
/// do not all come back at once.
#[derive(Default)]
pub struct Retry(u32);

impl Retry {
    pub fn backoff(&mut self) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let cap = Duration::from_secs(1) * 2u32.pow(self.0.min(5));
        self.0 += 1;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        cap / 2 + cap.mul_f64((random % 1000) as f64 / 2000.0)
    }
}

/// One watch request's length: how long a SIGTERM may wait.
const WINDOW: Duration = Duration::from_secs(8);

/// One collection [`wait_any`] watches, from the version its list had
/// (`None`: the list failed).
pub struct Watching<'a> {
    pub res: &'a ApiResource,
    pub from: Option<String>,
    pub generations: &'a BTreeMap<String, i64>,
}

/// Waits for a change of `res` after `from`: [`wait_any`] of one.
pub fn wait(
    kube: &Kube,
    res: &ApiResource,
    from: Option<String>,
    generations: &BTreeMap<String, i64>,
    interval: Duration,
    stop: &AtomicBool,
) -> bool {
    let one = Watching {
        res,
        from,
        generations,
    };
    wait_any(kube, vec![one], interval, stop)
}

/// Waits for a change in any of `watching` (the watch windows going on
/// from the last version each saw, so that what is not a change is
/// neither acted on nor replayed), or `interval`; `true` when told to
/// stop. A change is what [`Kube::wait_for_change`] says of each one's
/// `generations`. Without a version to watch from (a list failed), or
/// when a watch fails, it waits a little and the caller lists again.
pub fn wait_any(
    kube: &Kube,
    mut watching: Vec<Watching<'_>>,
    interval: Duration,
    stop: &AtomicBool,
) -> bool {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let Some(from) = watching
            .iter()
            .map(|w| w.from.clone())
            .collect::<Option<Vec<String>>>()
        else {
            return sleep_unless(stop, WINDOW);
        };
        let watches: Vec<Watch<'_>> = watching
            .iter()
            .zip(&from)
            .map(|(w, from)| Watch {
                res: w.res,
                ns: "",
                from,
                generations: w.generations,
            })
            .collect();
        let window = WINDOW.min(until - Instant::now());
        match kube.wait_for_change(&watches, window) {
            Ok(seen) if seen.iter().any(|w| w.changed) => return stop.load(Ordering::Relaxed),
            Ok(seen) => {
                for (w, s) in watching.iter_mut().zip(seen) {
                    w.from = Some(s.resource_version);
                }
            }
            Err(e) => {
                tracing::warn!(call = %e.call, error = %e, "watching; listing again");
                return sleep_unless(stop, Duration::from_secs(2));
            }
        }
    }
    stop.load(Ordering::Relaxed)
}

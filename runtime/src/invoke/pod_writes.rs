//! What an ADD writes to the pod once its networks are up: network-status
//! and one `AddedInterface` event per attachment. The thin binary writes
//! them before answering; the daemon answers first and finishes them right
//! after, still holding the container's turn, so a DEL of the same
//! container runs only once they are done and a late write never lands
//! after it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;

use crate::cni::{CniError, Code};
use crate::k8s::{events, status, PodContext};

/// Work a daemon runs after answering a request.
pub type Work = Box<dyn FnOnce() + Send>;

/// Where an invocation leaves its after-answer work (the daemon's), which
/// the daemon runs once the answer is sent.
#[derive(Default)]
pub struct AfterResult(Mutex<Vec<Work>>);

impl AfterResult {
    pub fn push(&self, w: Work) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(w);
    }

    pub fn take(&self) -> Vec<Work> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How long a late network-status write keeps trying an API server that
/// does not answer: the container's DEL waits for it.
const LATE_BUDGET: Duration = Duration::from_secs(10);
const LATE_BACKOFF: Duration = Duration::from_millis(200);

pub struct PodWrites {
    pub ctx: PodContext,
    /// (annotation key, value); `None` for a pod in `systemNamespaces`.
    pub status: Option<(String, String)>,
    pub events: Vec<Event>,
}

impl PodWrites {
    /// `AddedInterface` events for (ifname, addresses, network) of each
    /// attachment that reported any.
    pub fn added_events(ctx: &PodContext, added: &[(String, Vec<String>, String)]) -> Vec<Event> {
        let now = Timestamp::now();
        // An event's name is `<pod>.<its time in hex ns>`, as client-go's
        // recorder names them: one nanosecond apart each, or the API
        // server refuses all but the first as "already exists".
        added
            .iter()
            .zip(0..)
            .map(|((ifname, ips, network), i)| {
                let at = now
                    .checked_add(k8s_openapi::jiff::SignedDuration::from_nanos(i))
                    .unwrap_or(now);
                events::event(
                    &ctx.pod_ref,
                    &ctx.pod,
                    events::Kind::Normal,
                    "AddedInterface",
                    &events::added_interface(ifname, ips, network),
                    at,
                )
            })
            .collect()
    }

    /// Writes network-status (conflicts retried) and posts the events
    /// with its first attempt, at once: on a real API server each is an
    /// etcd write, and one after the other they doubled what the pod
    /// waited for. So the events may be recorded for an ADD whose status
    /// write then fails it (upstream posts them before writing the status
    /// at all). A pod deleted meanwhile is not an error.
    pub fn write(&self) -> Result<(), CniError> {
        self.write_status(true)
    }

    /// Network-status, with the events at once on its first attempt when
    /// `with_events` (else alone: a retry after `write` failed).
    fn write_status(&self, with_events: bool) -> Result<(), CniError> {
        let api = self.ctx.api.as_ref();
        let Some((key, value)) = &self.status else {
            if with_events {
                self.report(&api.create_events(&self.events));
            }
            return Ok(());
        };
        let written = status::write(api, &self.ctx.pod_ref, &self.ctx.pod, key, value, |p| {
            if !with_events {
                return api.replace_pod_status(p);
            }
            let (r, posted) = api.replace_pod_status_with_events(p, &self.events);
            self.report(&posted);
            r
        })?;
        if !written {
            tracing::warn!(pod = %self.ctx.pod_ref, "the pod was deleted during ADD; network-status not written");
        }
        Ok(())
    }

    /// Events are best effort: a failure is logged.
    fn report(&self, posted: &[Result<(), crate::k8s::client::KubeError>]) {
        for (r, e) in posted.iter().zip(&self.events) {
            if let Err(err) = r {
                tracing::debug!(pod = %self.ctx.pod_ref, reason = ?e.reason, error = %err, "event not recorded");
            }
        }
    }

    /// After the answer: `write`, the status write then retried alone while
    /// the API server is unavailable (within [`LATE_BUDGET`]).
    pub fn finish_late(self) {
        let started = Instant::now();
        let mut pause = LATE_BACKOFF;
        let mut outcome = self.write();
        loop {
            match outcome {
                Ok(()) => break,
                Err(e)
                    if e.code == Code::TryAgainLater as u32
                        && started.elapsed() + pause < LATE_BUDGET =>
                {
                    tracing::debug!(pod = %self.ctx.pod_ref, error = %e, "network-status write failed; retrying");
                    std::thread::sleep(pause);
                    pause *= 2;
                    outcome = self.write_status(false);
                }
                Err(e) => {
                    tracing::error!(pod = %self.ctx.pod_ref, error = %e, "network-status not written after the ADD's answer");
                    break;
                }
            }
        }
    }
}

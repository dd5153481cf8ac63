//! Kubernetes Events on the pod, as upstream Multus records them:
//! `AddedInterface` (Normal) per attachment after a successful ADD and
//! `NoNetworkFound` (Warning) for a selection naming a missing NAD, so
//! `kubectl describe pod` tells what happened. Best effort: a failed event
//! is logged, never an error.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::api::ClusterApi;
use super::pod::PodRef;

const COMPONENT: &str = "multus";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// The Event object for `pod`, named as client-go's recorder names them.
pub fn event(
    pod_ref: &PodRef,
    pod: &Pod,
    kind: Kind,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Event {
    let time = Time(now);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", pod_ref.name, now.as_nanosecond())),
            namespace: Some(pod_ref.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod_ref.name.clone()),
            namespace: Some(pod_ref.namespace.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(match kind {
            Kind::Normal => "Normal".into(),
            Kind::Warning => "Warning".into(),
        }),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        count: Some(1),
        first_timestamp: Some(time.clone()),
        last_timestamp: Some(time),
        ..Default::default()
    }
}

pub fn record(
    kube: &dyn ClusterApi,
    pod_ref: &PodRef,
    pod: &Pod,
    kind: Kind,
    reason: &str,
    message: &str,
) {
    let e = event(pod_ref, pod, kind, reason, message, Timestamp::now());
    if let Err(err) = kube.create_event(&e) {
        tracing::debug!(pod = %pod_ref, reason, error = %err, "event not recorded");
    }
}

/// Upstream's `AddedInterface` text: `Add eth0 [10.1.0.5/24] from cbr0`.
pub fn added_interface(ifname: &str, ips: &[String], network: &str) -> String {
    // A native result may carry any number of addresses.
    let ips = multus_host_functions::text::clip(ips.join(" "), 512);
    format!("Add {ifname} [{ips}] from {network}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_shape() {
        let mut pod = Pod::default();
        pod.metadata.uid = Some("u1".into());
        pod.metadata.resource_version = Some("42".into());
        let r = PodRef {
            namespace: "ns".into(),
            name: "web".into(),
            uid: None,
        };
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let msg = added_interface(
            "net1",
            &["10.1.0.5/24".into(), "fd00::5/64".into()],
            "ns/mv",
        );
        assert_eq!(msg, "Add net1 [10.1.0.5/24 fd00::5/64] from ns/mv");
        let v = serde_json::to_value(event(&r, &pod, Kind::Normal, "AddedInterface", &msg, now))
            .unwrap();
        assert_eq!(
            v["metadata"]["name"],
            format!("web.{:x}", now.as_nanosecond())
        );
        assert_eq!(v["involvedObject"]["uid"], "u1");
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(v["type"], "Normal");
        assert_eq!(v["source"]["component"], "multus");
        assert_eq!(v["firstTimestamp"], "2026-11-22T10:00:00Z");
    }
}

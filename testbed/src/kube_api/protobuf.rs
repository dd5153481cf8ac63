//! Request bodies in the apiserver's protobuf encoding, as client-go sends
//! them (upstream Multus asks for `application/vnd.kubernetes.protobuf`):
//! the `k8s\0` magic, a `runtime.Unknown` envelope, the object inside. Only
//! the fields this server reads are decoded (prost skips the rest), into
//! the JSON shape the JSON path stores; answers stay JSON, which client-go
//! accepts by the response's content type.

use prost::Message;
use serde_json::{json, Map, Value};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(string, tag = "6")]
    resource_version: String,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: std::collections::BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: std::collections::BTreeMap<String, String>,
}

/// Any object: metadata is field 1 of every kind.
#[derive(Clone, PartialEq, Message)]
struct Object {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

/// An Event's fields after its metadata.
#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(message, optional, tag = "2")]
    involved_object: Option<ObjectReference>,
    #[prost(string, tag = "3")]
    reason: String,
    #[prost(string, tag = "4")]
    message: String,
    #[prost(string, tag = "9")]
    event_type: String,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectReference {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    namespace: String,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    uid: String,
}

fn map(m: std::collections::BTreeMap<String, String>) -> Value {
    if m.is_empty() {
        return Value::Null;
    }
    Value::Object(
        m.into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect::<Map<_, _>>(),
    )
}

/// The body as the JSON the rest of the server reads, or why not.
pub fn to_json(body: &[u8]) -> Result<Vec<u8>, String> {
    let inner = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body without the k8s magic")?;
    let unknown = Unknown::decode(inner).map_err(|e| e.to_string())?;
    let tm = unknown.type_meta.unwrap_or_default();
    let obj = Object::decode(unknown.raw.as_slice()).map_err(|e| e.to_string())?;
    let m = obj.metadata.unwrap_or_default();
    let mut v = json!({"apiVersion": tm.api_version, "kind": tm.kind, "metadata": {
        "name": m.name, "namespace": m.namespace, "resourceVersion": m.resource_version,
        "labels": map(m.labels), "annotations": map(m.annotations)}});
    if tm.kind == "Event" {
        let ev = Event::decode(unknown.raw.as_slice()).map_err(|e| e.to_string())?;
        let io = ev.involved_object.unwrap_or_default();
        v["involvedObject"] =
            json!({"kind": io.kind, "namespace": io.namespace, "name": io.name, "uid": io.uid});
        v["reason"] = ev.reason.into();
        v["message"] = ev.message.into();
        v["type"] = ev.event_type.into();
    }
    Ok(serde_json::to_vec(&v).expect("json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_status_update_decodes() {
        let pod = Object {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                resource_version: "42".into(),
                annotations: [("k8s.v1.cni.cncf.io/network-status".into(), "[]".into())].into(),
                ..Default::default()
            }),
        };
        // A pod's spec (field 2) is no Event's involvedObject.
        let mut raw = pod.encode_to_vec();
        prost::encoding::bytes::encode(2, &vec![0xff, 0xfe], &mut raw);
        let mut body = MAGIC.to_vec();
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: "v1".into(),
                kind: "Pod".into(),
            }),
            raw,
        }
        .encode(&mut body)
        .unwrap();
        let v: Value = serde_json::from_slice(&to_json(&body).unwrap()).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(
            v["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"],
            "[]"
        );
        assert!(v["metadata"]["labels"].is_null());
        assert!(to_json(b"{}").is_err());
    }
}

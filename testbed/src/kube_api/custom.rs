//! Custom resources on the in-test API server, served as a kube-apiserver
//! serves CRDs: whereabouts' IPPool, OverlappingRangeIPReservation and
//! NodeSlicePool in `whereabouts.cni.cncf.io/v1alpha1`, and the
//! cluster-scoped WasmPlugin and WasmPluginNode in
//! `multus-wasm.io/v1alpha1`; ConfigMaps are
//! kept the same way. A resourceVersion on every write, 409 Conflict on a
//! replace with a stale one, 409 AlreadyExists, 404, and 422 for what the
//! CRDs' schemas reject (a missing required field, a replace without
//! resourceVersion).

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::{status, State};

pub const GROUP: &str = "whereabouts.cni.cncf.io";
pub const PLUGIN_GROUP: &str = "multus-wasm.io";
pub const VERSION: &str = "v1alpha1";

/// (plural, kind, required fields of spec; `None`: no spec, as a ConfigMap).
const KINDS: &[(&str, &str, Option<&[&str]>)] = &[
    ("ippools", "IPPool", Some(&["range", "allocations"])),
    (
        "overlappingrangeipreservations",
        "OverlappingRangeIPReservation",
        Some(&["podref"]),
    ),
    (
        "nodeslicepools",
        "NodeSlicePool",
        Some(&["range", "sliceSize"]),
    ),
    ("wasmplugins", "WasmPlugin", Some(&["sha256", "source"])),
    ("wasmpluginnodes", "WasmPluginNode", None),
    ("configmaps", "ConfigMap", None),
];

/// Kinds whose `status` is a subresource: the main resource's writes leave
/// it alone, and only `PUT .../status` changes it.
const STATUS_SUBRESOURCE: &[&str] = &["nodeslicepools", "wasmplugins"];

/// The API group of `plural`, as its messages and list kinds name it.
fn group_of(plural: &str) -> &'static str {
    match plural {
        "wasmplugins" | "wasmpluginnodes" => PLUGIN_GROUP,
        "configmaps" => "",
        _ => GROUP,
    }
}

/// `plural.group` as the apiserver's messages say it (`configmaps` alone).
fn qualified(plural: &str) -> String {
    match group_of(plural) {
        "" => plural.to_string(),
        g => format!("{plural}.{g}"),
    }
}

/// Objects by (plural, namespace, name).
pub type Objects = BTreeMap<(String, String, String), Value>;

/// A change of a watchable kind, for its watches (a delete gets a new
/// resourceVersion, as the apiserver gives it).
pub(super) fn record(st: &mut State, plural: &str, kind: &'static str, mut object: Value) {
    let Some(collection) = super::watch::Collection::of_custom(plural) else {
        return;
    };
    if kind == "DELETED" {
        object["metadata"]["resourceVersion"] = st.next_rv().into();
    }
    st.record(collection, kind, object);
}

fn kind_of(plural: &str) -> Option<(&'static str, Option<&'static [&'static str]>)> {
    KINDS
        .iter()
        .find(|(p, _, _)| *p == plural)
        .map(|(_, k, r)| (*k, *r))
}

fn not_found(plural: &str, name: &str) -> (StatusCode, Value) {
    super::not_found(plural, group_of(plural), name)
}

/// `PUT .../<name>/status`: only `status` changes, guarded by the
/// resourceVersion like any replace.
fn replace_status(
    st: &mut State,
    kind: &str,
    plural: &str,
    key: &(String, String, String),
    n: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let obj = match parse(kind, body) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let Some(stored) = st.custom.get(key).cloned() else {
        return not_found(plural, n);
    };
    if obj["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
        return conflict(
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{n}\": the object has been modified; please apply your changes to the latest version and try again", qualified(plural)),
            plural,
            n,
        );
    }
    let mut updated = stored;
    updated["status"] = obj["status"].clone();
    updated["metadata"]["resourceVersion"] = st.next_rv().into();
    st.custom.insert(key.clone(), updated.clone());
    record(st, plural, "MODIFIED", updated.clone());
    (StatusCode::OK, updated)
}

/// `PATCH .../<name>/status` with a JSON patch (the one patch type our
/// clients send a status; any other is refused 415 here, where the
/// apiserver would take a merge patch too): applied to the object as
/// stored, whatever resourceVersion the writer last saw, and only its
/// `status` kept. A failed `test` op, or a patch that cannot apply, is the
/// same 422 for both, the generic message and empty details, word for word
/// what kube-apiserver v1.36 answers.
pub fn patch_status(
    st: &mut State,
    ns: &str,
    plural: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    if kind_of(plural).is_none() || !STATUS_SUBRESOURCE.contains(&plural) {
        return super::no_such_resource();
    }
    if !content_type.starts_with("application/json-patch+json") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json (got {content_type:?})"),
            Value::Null,
        );
    }
    let key = (plural.to_string(), ns.to_string(), name.to_string());
    let Some(stored) = st.custom.get(&key) else {
        return not_found(plural, name);
    };
    let Ok(patch) = std::str::from_utf8(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the patch is not UTF-8".into(),
            Value::Null,
        );
    };
    use multus_host_functions::cluster::{patch_status_of, ClusterError};
    let Ok(ops) = serde_json::from_str::<json_patch::Patch>(patch) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the patch is not a JSON patch".into(),
            Value::Null,
        );
    };
    let mut updated = match patch_status_of(stored, &ops) {
        Ok(u) => u,
        Err(ClusterError::Conflict(_) | ClusterError::Invalid(_)) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "the server rejected our request due to an error in our request".into(),
                json!({}),
            )
        }
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                e.to_string(),
                Value::Null,
            )
        }
    };
    updated["metadata"]["resourceVersion"] = st.next_rv().into();
    st.custom.insert(key, updated.clone());
    record(st, plural, "MODIFIED", updated.clone());
    (StatusCode::OK, updated)
}

/// `PATCH .../wasmpluginnodes/<name>` as a server-side apply, the one
/// kind of patch the nodes send: it creates the object or replaces the
/// fields applied, without a resourceVersion unless the body carries one.
/// Each report has one writer, so fields are owned per object here, not
/// per field as the apiserver tracks them: another manager's object is
/// taken over only with `force`, as the apiserver's conflict detection
/// says. A merge patch or JSON patch is refused (415), as for a body of a
/// type the apiserver does not accept.
pub fn apply(
    st: &mut State,
    plural: &str,
    name: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    if plural != "wasmpluginnodes" {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Value::Null,
        );
    }
    if !content_type.starts_with("application/apply-patch") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"),
            Value::Null,
        );
    }
    let param = |k: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
    };
    let Some(manager) = param("fieldManager").filter(|m| !m.is_empty()) else {
        return invalid(
            "PatchOptions",
            "",
            "fieldManager",
            "Required value: is required for apply patch",
        );
    };
    let force = param("force").as_deref() == Some("true");
    let (kind, _) = kind_of(plural).expect("a known kind");
    let patch = match parse(kind, body) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if patch["metadata"]["name"] != name {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL".into(),
            Value::Null,
        );
    }
    let key = (plural.to_string(), String::new(), name.to_string());
    let stored = st.custom.get(&key).cloned();
    if let (Some(stored), Some(rv)) = (&stored, patch["metadata"]["resourceVersion"].as_str()) {
        if Some(rv) != stored["metadata"]["resourceVersion"].as_str() {
            return conflict(
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", qualified(plural)),
                plural,
                name,
            );
        }
    }
    if let Some(owner) = st.appliers.get(&key).filter(|o| **o != manager) {
        if !force && stored.is_some() {
            return conflict(
                "Conflict",
                format!("Apply failed with 1 conflict: conflict with \"{owner}\": .status"),
                plural,
                name,
            );
        }
    }
    let (mut obj, code, event) = match stored {
        Some(s) => (s, StatusCode::OK, "MODIFIED"),
        None => (
            json!({"apiVersion": patch["apiVersion"], "kind": kind, "metadata": {
                "name": name, "creationTimestamp": "2026-12-01T00:00:00Z", "generation": 0}}),
            StatusCode::CREATED,
            "ADDED",
        ),
    };
    let before = obj.clone();
    for (k, v) in patch.as_object().into_iter().flatten() {
        if k == "metadata" {
            for f in ["labels", "annotations", "ownerReferences"] {
                if !v[f].is_null() {
                    obj["metadata"][f] = v[f].clone();
                }
            }
        } else if k != "apiVersion" && k != "kind" {
            obj[k] = v.clone();
        }
    }
    if obj == before {
        // The apiserver writes nothing for an apply that changes nothing.
        return (StatusCode::OK, obj);
    }
    let rv = st.next_rv();
    if obj["metadata"]["uid"].is_null() {
        obj["metadata"]["uid"] = format!("{plural}--{name}-{rv}").into();
    }
    obj["metadata"]["resourceVersion"] = rv.into();
    obj["metadata"]["generation"] =
        (obj["metadata"]["generation"].as_u64().unwrap_or(0) + 1).into();
    st.appliers.insert(key.clone(), manager);
    st.custom.insert(key, obj.clone());
    record(st, plural, event, obj.clone());
    (code, obj)
}

fn parse(kind: &str, body: &[u8]) -> Result<Value, (StatusCode, Value)> {
    serde_json::from_slice(body).map_err(|_| {
        status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("the body is not a {kind}"),
            Value::Null,
        )
    })
}

fn conflict(reason: &str, message: String, plural: &str, name: &str) -> (StatusCode, Value) {
    status(
        StatusCode::CONFLICT,
        reason,
        message,
        json!({"name": name, "group": group_of(plural), "kind": plural}),
    )
}

fn invalid(kind: &str, name: &str, field: &str, message: &str) -> (StatusCode, Value) {
    let group = KINDS
        .iter()
        .find(|(_, k, _)| *k == kind)
        .map_or(GROUP, |(p, _, _)| group_of(p));
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{kind}.{group} \"{name}\" is invalid: {field}: {message}"),
        json!({"name": name, "group": group, "kind": kind,
               "causes": [{"reason": "FieldValueRequired", "message": message, "field": field}]}),
    )
}

/// What the CRD's schema refuses in `obj`, as the apiserver says it.
fn validate(
    kind: &str,
    required: Option<&[&str]>,
    name: &str,
    obj: &Value,
) -> Option<(StatusCode, Value)> {
    let required = required?;
    if !obj["spec"].is_object() {
        return Some(invalid(kind, name, "spec", "Required value"));
    }
    for r in required {
        if obj["spec"].get(*r).is_none_or(Value::is_null) {
            return Some(invalid(kind, name, &format!("spec.{r}"), "Required value"));
        }
    }
    if kind == "IPPool" {
        for (k, a) in obj["spec"]["allocations"].as_object().into_iter().flatten() {
            for r in ["id", "podref"] {
                if !a[r].is_string() {
                    return Some(invalid(
                        kind,
                        name,
                        &format!("spec.allocations[{k}].{r}"),
                        "Required value",
                    ));
                }
            }
        }
    }
    None
}

/// Serves `<group path>/namespaces/<ns>/<plural>[/<name>]`, or
/// `<group path>/<plural>[/<name>]` for a cluster-scoped kind (`ns` empty).
/// The equality terms of the query's `labelSelector` (`k=v`, `k==v`: an
/// object without label `k` never matches). Other operators are refused
/// with a 400, as a selector the real API server cannot parse is.
fn label_selector(query: &str) -> Result<Vec<(String, String)>, (StatusCode, Value)> {
    let Some((_, sel)) =
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "labelSelector")
    else {
        return Ok(Vec::new());
    };
    sel.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (k, v) = t
                .split_once("==")
                .or_else(|| t.split_once('='))
                .filter(|(k, v)| !k.contains('!') && !v.contains('='))
                .ok_or_else(|| {
                    status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("unable to parse requirement: {t:?}: only equality is served here"),
                        Value::Null,
                    )
                })?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// What a request asked, beside the object it names.
pub struct Asked<'a> {
    pub method: &'a Method,
    pub query: &'a str,
    pub body: &'a [u8],
}

pub fn route(
    st: &mut State,
    asked: &Asked<'_>,
    ns: &str,
    plural: &str,
    name: Option<&str>,
    status_sub: bool,
) -> (StatusCode, Value) {
    let Asked {
        method,
        query,
        body,
    } = *asked;
    let Some((kind, required)) = kind_of(plural) else {
        return super::no_such_resource();
    };
    let key = |n: &str| (plural.to_string(), ns.to_string(), n.to_string());
    let has_status = STATUS_SUBRESOURCE.contains(&plural);
    if status_sub {
        return match (method, name, has_status) {
            (&Method::PUT, Some(n), true) => replace_status(st, kind, plural, &key(n), n, body),
            _ => super::no_such_resource(),
        };
    }
    match (method, name) {
        (&Method::GET, Some(n)) => {
            let cached = form_urlencoded::parse(query.as_bytes())
                .any(|(k, v)| k == "resourceVersion" && v == "0");
            st.cached_reads += u64::from(cached);
            let objects = if cached && st.lagging.iter().any(|p| p == plural) {
                &st.cache_lag
            } else {
                &st.custom
            };
            match objects.get(&key(n)) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => not_found(plural, n),
            }
        }
        (&Method::GET, None) => {
            let selector = match label_selector(query) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let items: Vec<Value> = st
                .custom
                .iter()
                .filter(|((p, n, _), v)| {
                    p == plural
                        && n == ns
                        && selector
                            .iter()
                            .all(|(k, want)| v["metadata"]["labels"][k].as_str() == Some(want))
                })
                .map(|(_, v)| v.clone())
                .collect();
            let api_version = match group_of(plural) {
                "" => "v1".to_string(),
                g => format!("{g}/{VERSION}"),
            };
            (
                StatusCode::OK,
                json!({"apiVersion": api_version, "kind": format!("{kind}List"),
                       "metadata": {"resourceVersion": st.resource_version.to_string()},
                       "items": items}),
            )
        }
        (&Method::POST, None) => {
            let mut obj = match parse(kind, body) {
                Ok(o) => o,
                Err(e) => return e,
            };
            let Some(n) = obj["metadata"]["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(String::from)
            else {
                return invalid(
                    kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                );
            };
            if let Some(e) = validate(kind, required, &n, &obj) {
                return e;
            }
            if has_status {
                obj.as_object_mut().expect("an object").remove("status");
            }
            if st.custom.contains_key(&key(&n)) {
                return conflict(
                    "AlreadyExists",
                    format!("{} \"{n}\" already exists", qualified(plural)),
                    plural,
                    &n,
                );
            }
            let rv = st.next_rv();
            let m = &mut obj["metadata"];
            if !ns.is_empty() {
                m["namespace"] = ns.into();
            }
            m["uid"] = format!("{plural}-{ns}-{n}-{rv}").into();
            m["resourceVersion"] = rv.into();
            m["generation"] = 1.into();
            m["creationTimestamp"] = "2026-12-01T00:00:00Z".into();
            st.custom.insert(key(&n), obj.clone());
            record(st, plural, "ADDED", obj.clone());
            (StatusCode::CREATED, obj)
        }
        (&Method::PUT, Some(n)) => {
            let mut obj = match parse(kind, body) {
                Ok(o) => o,
                Err(e) => return e,
            };
            if obj["metadata"]["name"] != n {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the name of the object does not match the name on the URL".into(),
                    Value::Null,
                );
            }
            let Some(stored) = st.custom.get(&key(n)).cloned() else {
                return not_found(plural, n);
            };
            if obj["metadata"]["resourceVersion"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                return invalid(
                    kind,
                    n,
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                );
            }
            if let Some(e) = validate(kind, required, n, &obj) {
                return e;
            }
            if obj["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
                return conflict(
                    "Conflict",
                    format!("Operation cannot be fulfilled on {} \"{n}\": the object has been modified; please apply your changes to the latest version and try again", qualified(plural)),
                    plural,
                    n,
                );
            }
            let rv = st.next_rv();
            let generation = stored["metadata"]["generation"].as_u64().unwrap_or(1)
                + u64::from(obj["spec"] != stored["spec"] || required.is_none());
            let m = &mut obj["metadata"];
            if !ns.is_empty() {
                m["namespace"] = ns.into();
            }
            m["uid"] = stored["metadata"]["uid"].clone();
            m["creationTimestamp"] = stored["metadata"]["creationTimestamp"].clone();
            m["resourceVersion"] = rv.into();
            m["generation"] = generation.into();
            if has_status {
                obj["status"] = stored["status"].clone();
            }
            st.custom.insert(key(n), obj.clone());
            record(st, plural, "MODIFIED", obj.clone());
            (StatusCode::OK, obj)
        }
        (&Method::DELETE, Some(n)) => match st.custom.remove(&key(n)) {
            Some(o) => {
                record(st, plural, "DELETED", o.clone());
                (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                       "details": {"name": n, "group": group_of(plural), "kind": plural,
                                   "uid": o["metadata"]["uid"]}}),
                )
            }
            None => not_found(plural, n),
        },
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Value::Null,
        ),
    }
}

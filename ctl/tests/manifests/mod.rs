//! The manifests of `deploy/`, as `kubectl apply -k deploy/` reads them.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of every file the kustomization lists, as JSON values.
pub fn documents() -> Vec<(String, Value)> {
    let k: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for file in k["resources"].as_array().expect("resources") {
        let file = file.as_str().unwrap();
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !v.is_null() {
                out.push((file.to_string(), v));
            }
        }
    }
    out
}

/// The one document of `kind` (and `name`, when given).
pub fn find(kind: &str, name: Option<&str>) -> Value {
    let found: Vec<Value> = documents()
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind && name.is_none_or(|n| v["metadata"]["name"] == n))
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name:?}");
    found.into_iter().next().unwrap()
}

/// (apiGroup, resource, verb) of a policy rule list.
pub fn grants(
    rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// The (apiGroup, resource, verb, namespace) of a logged API request
/// ("METHOD /path status").
pub fn authorization(request: &str) -> (String, String, String, String) {
    let mut it = request.split(' ');
    let (method, path) = (it.next().unwrap(), it.next().unwrap());
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => panic!("{request}"),
    };
    let ["namespaces", ns, resource, tail @ ..] = rest else {
        panic!("not namespaced: {request}")
    };
    let resource = match tail {
        [_, sub] => format!("{resource}/{sub}"),
        _ => resource.to_string(),
    };
    let verb = match (method, tail.is_empty()) {
        ("GET", false) => "get",
        ("GET", true) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => panic!("{request}"),
    };
    (group.into(), resource, verb.into(), ns.to_string())
}

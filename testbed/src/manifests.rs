//! The manifests of `deploy/` (thin), `deploy/thick/` and
//! `deploy/whereabouts/`, as
//! `kubectl apply -k` reads them, and the RBAC checks both modes' tests make.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// `deploy/` (thin mode); thick mode's is `thick()`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

pub fn thick() -> PathBuf {
    dir().join("thick")
}

/// `deploy/whereabouts/`: the CRDs and RBAC of cluster-wide IPAM.
pub fn whereabouts() -> PathBuf {
    dir().join("whereabouts")
}

/// Every document of every file the kustomization in `dir` lists, as JSON
/// values, named by their path relative to `dir`: [`build`], which must
/// succeed.
pub fn documents_in(dir: &Path) -> Vec<(String, Value)> {
    build(dir).unwrap_or_else(|e| panic!("kustomize build {}: {e}", dir.display()))
}

/// The keys of a kustomization this builder understands; any other makes
/// it fail, so a new one gets its rules here before a test can pass on it.
const KUSTOMIZATION_KEYS: &[&str] = &["apiVersion", "kind", "resources", "images"];

/// Builds the kustomization in `dir` under kustomize's load rules, as
/// `kubectl apply -k` would: each resource is a file in or below `dir`
/// (kustomize refuses anything else: "security; file ... is not in or
/// below ...") or a folder with its own kustomization, built the same way
/// wherever it is. Documents are named by their path relative to `dir`.
pub fn build(dir: &Path) -> Result<Vec<(String, Value)>, String> {
    let root = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = root.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let k: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    for key in k.as_object().into_iter().flat_map(|o| o.keys()) {
        if !KUSTOMIZATION_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{}: key {key:?} is not modelled here",
                file.display()
            ));
        }
    }
    let mut out = Vec::new();
    for entry in k["resources"].as_array().into_iter().flatten() {
        let name = entry.as_str().ok_or("a resource that is not a string")?;
        let path = root
            .join(name)
            .canonicalize()
            .map_err(|e| format!("resource {name}: {e}"))?;
        if path.is_dir() {
            for (inner, doc) in build(&path)? {
                out.push((format!("{name}/{inner}"), doc));
            }
            continue;
        }
        if !path.starts_with(&root) {
            return Err(format!(
                "security; file '{}' is not in or below '{}'",
                path.display(),
                root.display()
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        for v in yaml_documents(&text).map_err(|e| format!("{name}: {e}"))? {
            out.push((name.to_string(), v));
        }
    }
    Ok(out)
}

/// The non-empty documents of a YAML stream, as JSON values.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Every folder under `deploy/` with a kustomization.
pub fn kustomizations() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if d.join("kustomization.yaml").exists() {
            out.push(d.to_path_buf());
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for s in subs {
            walk(&s, out);
        }
    }
    let mut out = Vec::new();
    walk(&dir(), &mut out);
    out
}

/// Thin mode's documents.
pub fn documents() -> Vec<(String, Value)> {
    documents_in(&dir())
}

/// The one document of `kind` (and `name`, when given) in thin mode's.
pub fn find(kind: &str, name: Option<&str>) -> Value {
    find_in(&dir(), kind, name)
}

/// The one document of `kind` (and `name`, when given) in `dir`'s.
pub fn find_in(dir: &Path, kind: &str, name: Option<&str>) -> Value {
    let found: Vec<Value> = documents_in(dir)
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

/// Every (apiGroup, resource, verb, namespace) a logged request needs: a
/// server-side apply that created its object (201) needs `create` as well
/// as `patch`, as the apiserver authorizes it.
pub fn authorizations(request: &str) -> Vec<(String, String, String, String)> {
    let one = authorization(request);
    let mut all = vec![one.clone()];
    if request.starts_with("PATCH ") && request.ends_with(" 201") {
        all.push((one.0, one.1, "create".into(), one.3));
    }
    all
}

/// A logged request to a URL every authenticated user may read (the
/// `system:public-info-viewer` ClusterRole): no RBAC rule is involved.
pub fn is_public(request: &str) -> bool {
    let path = request.split(' ').nth(1).unwrap_or_default();
    ["/version", "/healthz", "/livez", "/readyz"].contains(&path)
}

/// The (apiGroup, resource, verb, namespace) of a logged API request
/// ("METHOD /path status", a watch logged as "GET /path?watch status", a
/// list by label as "GET /path?labelSelector=... status"); the namespace is
/// empty for a request across all namespaces or of a cluster-scoped kind.
pub fn authorization(request: &str) -> (String, String, String, String) {
    let mut it = request.split(' ');
    let (method, path) = (it.next().unwrap(), it.next().unwrap());
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let watch = query == "watch";
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => panic!("{request}"),
    };
    if let [resource] = rest {
        let verb = if watch { "watch" } else { "list" };
        return (
            group.into(),
            resource.to_string(),
            verb.into(),
            String::new(),
        );
    }
    // A cluster-scoped object: `<resource>/<name>[/<sub>]`, no namespace.
    let (ns, resource, tail) = match rest {
        ["namespaces", ns, resource, tail @ ..] => (*ns, *resource, tail),
        [resource, tail @ ..] if *resource != "namespaces" => ("", *resource, tail),
        _ => panic!("not an object request: {request}"),
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

/// The host path that `seen` (a path inside container `c`) is, through the
/// DaemonSet's hostPath volumes; `None` when no hostPath mount covers it.
pub fn host_path_of(
    ds: &k8s_openapi::api::apps::v1::DaemonSet,
    c: &k8s_openapi::api::core::v1::Container,
    seen: &Path,
) -> Option<PathBuf> {
    let spec = ds.spec.as_ref()?.template.spec.as_ref()?;
    c.volume_mounts
        .iter()
        .flatten()
        .filter(|m| seen.starts_with(&m.mount_path))
        // The deepest mount wins, as in the container.
        .max_by_key(|m| m.mount_path.len())
        .and_then(|m| {
            let rel = seen.strip_prefix(&m.mount_path).ok()?;
            let vol = spec.volumes.iter().flatten().find(|v| v.name == m.name)?;
            Some(Path::new(&vol.host_path.as_ref()?.path).join(rel))
        })
}

/// The name of the ConfigMap whose volume `c` mounts over `file`, and the
/// key `file` names in it.
pub fn configmap_file(
    ds: &k8s_openapi::api::apps::v1::DaemonSet,
    c: &k8s_openapi::api::core::v1::Container,
    file: &Path,
) -> (String, String) {
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| file.starts_with(&m.mount_path))
        .unwrap_or_else(|| panic!("{} is not mounted in {}", file.display(), c.name));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let key = file.file_name().unwrap().to_str().unwrap().to_string();
    (volume.config_map.as_ref().unwrap().name.clone(), key)
}

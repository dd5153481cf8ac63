//! Custom objects on the Kubernetes API (`multus:plugin/cluster`, WIT
//! 0.1.2; `patch-status` 0.1.4). The runtime supplies the real backend (it
//! owns the API client); here are the types, the grant check, the status
//! patch as the API server applies it, and an in-memory recording backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// A kind of namespaced custom object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}/{}", self.plural, self.group, self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What one call may reach: these API groups (in the backend's namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterGrant {
    pub groups: Vec<String>,
    /// The node name the guest is told.
    pub node: String,
}

impl ClusterGrant {
    /// The group must be granted, the version and plural DNS-1123 labels,
    /// and an object name one path segment: they become segments of the
    /// request's path, where `/`, `?`, `#`, `%` or a `..` would reach
    /// another namespace, resource or subresource than the grant says. A
    /// name the API server would refuse for other reasons (capitals, `_`)
    /// goes to it, as before: it answers 404 or 422.
    pub fn check(&self, plugin: &str, kind: &Kind, name: Option<&str>) -> Result<(), ClusterError> {
        if !self.groups.contains(&kind.group) {
            return Err(ClusterError::Denied(format!(
                "plugin {plugin:?} may not reach API group {:?} (granted: {})",
                crate::text::quoted(&kind.group),
                crate::grant::listed(&self.groups)
            )));
        }
        for (what, value) in [("version", &kind.version), ("plural", &kind.plural)] {
            if !dns_label(value) {
                return Err(ClusterError::Denied(format!(
                    "plugin {plugin:?}: the kind's {what} {:?} is not a DNS-1123 label",
                    crate::text::quoted(value)
                )));
            }
        }
        match name {
            Some(n) if !path_segment(n) => Err(ClusterError::Denied(format!(
                "plugin {plugin:?}: object name {:?} is not a name the API server has",
                crate::text::quoted(n)
            ))),
            _ => Ok(()),
        }
    }
}

/// Lowercase letters, digits and `-`, at most 63, alphanumeric at both ends.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Letters, digits, `-`, `_` and `.`, at most 253 (an object name's
/// limit), and not `.` or `..`.
fn path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The most pairs a label selector may have, and the most bytes.
pub const MAX_SELECTOR_LABELS: usize = 8;
pub const MAX_SELECTOR_BYTES: usize = 4096;

/// A guest's equality label selector (`k=v,k2=v2`), checked before any
/// backend sees it: at most [`MAX_SELECTOR_BYTES`] and
/// [`MAX_SELECTOR_LABELS`] pairs, each key a Kubernetes label key (an
/// optional DNS-1123 subdomain prefix and `/`, then a name) and each value
/// a label value. Only those characters reach the query, so a pair cannot
/// add another operator (`!`, `in`, `==`) or query parameter (`&`, `#`):
/// it selects by exactly what it says. One string, not a WIT list of
/// pairs: lifting a list copies every element into the host, and
/// elements may all point at one large string of the guest's memory
/// (millions of copies of 16 MiB before any check could run).
pub fn checked_selector(selector: &str) -> Result<String, ClusterError> {
    if selector.len() > MAX_SELECTOR_BYTES {
        return Err(ClusterError::Invalid(format!(
            "the label selector is {} bytes, over {MAX_SELECTOR_BYTES}",
            selector.len()
        )));
    }
    if selector.is_empty() {
        return Ok(String::new());
    }
    let terms: Vec<&str> = selector.split(',').collect();
    if terms.len() > MAX_SELECTOR_LABELS {
        return Err(ClusterError::Invalid(format!(
            "the label selector has {} pairs, over {MAX_SELECTOR_LABELS}",
            terms.len()
        )));
    }
    for term in &terms {
        let Some((key, value)) = term.split_once('=') else {
            return Err(ClusterError::Invalid(format!(
                "the label selector's {:?} is not key=value",
                crate::text::quoted(term)
            )));
        };
        if !label_key(key) {
            return Err(ClusterError::Invalid(format!(
                "the label key {:?} is not a Kubernetes label key",
                crate::text::quoted(key)
            )));
        }
        if !(value.is_empty() || label_name(value)) {
            return Err(ClusterError::Invalid(format!(
                "the value {:?} of label {key} is not a Kubernetes label value",
                crate::text::quoted(value)
            )));
        }
    }
    Ok(selector.to_string())
}

/// `[prefix/]name`: the prefix a DNS-1123 subdomain of at most 253, the
/// name a label name.
fn label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && label_name(name),
        None => label_name(s),
    }
}

/// At most 63 letters, digits, `-`, `_` and `.`, alphanumeric at both ends.
fn label_name(s: &str) -> bool {
    let alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    s.len() <= 63
        && alnum(s.as_bytes().first())
        && alnum(s.as_bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// DNS-1123 labels joined by `.`, at most 253 in all.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

/// The most an object a guest writes (`create`, `replace`,
/// `replace-status`) may be as JSON text: etcd stores no larger object
/// (its default request limit, 1.5 MiB), and parsing costs the host tens
/// of bytes per byte of text, so a larger one is refused before it is.
pub const MAX_OBJECT_BYTES: usize = 3 << 19;

/// `object` if it is at most [`MAX_OBJECT_BYTES`].
pub fn checked_object(object: &str) -> Result<&str, ClusterError> {
    if object.len() > MAX_OBJECT_BYTES {
        return Err(ClusterError::Invalid(format!(
            "the object is {} bytes, over {MAX_OBJECT_BYTES}",
            object.len()
        )));
    }
    Ok(object)
}

/// The most a status patch may be, as JSON text and in ops.
pub const MAX_PATCH_BYTES: usize = 64 * 1024;
pub const MAX_PATCH_OPS: usize = 256;

/// A guest's status patch, checked before any backend sees it: at most
/// [`MAX_PATCH_BYTES`] of JSON and [`MAX_PATCH_OPS`] ops, each a `test`,
/// `add`, `replace` or `remove` of a path under `/status`. No `copy` or
/// `move`: each can double what it copies, so 30 of them in a kilobyte
/// make 120 GB wherever the patch is applied (the host applies it itself
/// after the API server's 422, to tell a failed test from a bad patch).
pub fn checked_status_patch(patch: &str) -> Result<json_patch::Patch, ClusterError> {
    if patch.len() > MAX_PATCH_BYTES {
        return Err(ClusterError::Invalid(format!(
            "the JSON patch is {} bytes, over {MAX_PATCH_BYTES}",
            patch.len()
        )));
    }
    let ops: json_patch::Patch = serde_json::from_str(patch)
        .map_err(|e| ClusterError::Invalid(format!("the JSON patch: {e}")))?;
    if ops.0.len() > MAX_PATCH_OPS {
        return Err(ClusterError::Invalid(format!(
            "the JSON patch has {} ops, over {MAX_PATCH_OPS}",
            ops.0.len()
        )));
    }
    for op in &ops.0 {
        use json_patch::PatchOperation as Op;
        if matches!(op, Op::Copy(_) | Op::Move(_)) {
            return Err(ClusterError::Invalid(
                "the JSON patch: copy and move are not served".into(),
            ));
        }
        let path = op.path().as_str();
        if path != "/status" && !path.starts_with("/status/") {
            return Err(ClusterError::Invalid(format!(
                "the JSON patch: {:?} is not under /status",
                crate::text::quoted(path)
            )));
        }
    }
    Ok(ops)
}

/// The calls, all in one namespace the backend decides (from the
/// credentials it resolves, which is why it is asked, lazily).
pub trait ClusterBackend: Send {
    fn namespace(&mut self) -> Result<String, ClusterError>;
    fn get(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError>;
    /// A GET the API server may answer from its watch cache.
    fn get_cached(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError>;
    /// The objects `selector` ([`checked_selector`]; empty: all) picks.
    fn list(&mut self, kind: &Kind, selector: &str) -> Result<String, ClusterError>;
    fn create(&mut self, kind: &Kind, object: &str) -> Result<String, ClusterError>;
    fn replace(&mut self, kind: &Kind, name: &str, object: &str) -> Result<String, ClusterError>;
    fn replace_status(
        &mut self,
        kind: &Kind,
        name: &str,
        object: &str,
    ) -> Result<String, ClusterError>;
    fn delete(&mut self, kind: &Kind, name: &str) -> Result<(), ClusterError>;
    /// A JSON patch of the status subresource ([`checked_status_patch`]),
    /// unguarded but by its `test` ops (a failed one is
    /// [`ClusterError::Conflict`]).
    fn patch_status(
        &mut self,
        kind: &Kind,
        name: &str,
        patch: &json_patch::Patch,
    ) -> Result<String, ClusterError>;
}

/// What the API server does with a JSON patch of a status subresource:
/// the patch applies to the object as stored, and only its `status` is
/// kept (the status strategy drops any other change). A failed `test` is a
/// [`ClusterError::Conflict`].
pub fn patch_status_of(stored: &Value, ops: &json_patch::Patch) -> Result<Value, ClusterError> {
    let mut patched = stored.clone();
    json_patch::patch(&mut patched, ops).map_err(|e| match e.kind {
        json_patch::PatchErrorKind::TestFailed => {
            ClusterError::Conflict(format!("testing value {} failed: test failed", e.path))
        }
        _ => ClusterError::Invalid(format!("the JSON patch: {e}")),
    })?;
    let mut updated = stored.clone();
    updated["status"] = patched
        .get_mut("status")
        .map(Value::take)
        .unwrap_or(Value::Null);
    Ok(updated)
}

/// Records every call and answers from objects kept in memory, with the
/// API server's resourceVersion rules, so a plugin's dry run behaves as on
/// an empty cluster; nothing leaves the process.
#[derive(Clone, Default)]
pub struct RecordingCluster {
    pub ops: Arc<Mutex<Vec<String>>>,
    objects: Arc<Mutex<BTreeMap<(Kind, String), Value>>>,
    rv: Arc<Mutex<u64>>,
}

impl RecordingCluster {
    fn record(&self, op: String) {
        self.ops.lock().expect("ops").push(op);
    }

    fn next_rv(&self) -> String {
        let mut rv = self.rv.lock().expect("rv");
        *rv += 1;
        rv.to_string()
    }

    fn stored(&self, kind: &Kind, name: &str) -> Result<String, ClusterError> {
        let objects = self.objects.lock().expect("objects");
        objects
            .get(&(kind.clone(), name.to_string()))
            .map(Value::to_string)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))
    }

    fn parse(object: &str) -> Result<Value, ClusterError> {
        serde_json::from_str(object).map_err(|e| ClusterError::Invalid(format!("not JSON: {e}")))
    }
}

impl ClusterBackend for RecordingCluster {
    fn namespace(&mut self) -> Result<String, ClusterError> {
        Ok("kube-system".into())
    }

    fn get(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError> {
        self.record(format!("get {kind} {name}"));
        self.stored(kind, name)
    }

    /// No cache here: always the object as stored.
    fn get_cached(&mut self, kind: &Kind, name: &str) -> Result<String, ClusterError> {
        self.record(format!("get-cached {kind} {name}"));
        self.stored(kind, name)
    }

    fn list(&mut self, kind: &Kind, selector: &str) -> Result<String, ClusterError> {
        self.record(format!("list {kind} {selector}").trim_end().to_string());
        let terms: Vec<(&str, &str)> = selector
            .split(',')
            .filter_map(|t| t.split_once('='))
            .collect();
        let objects = self.objects.lock().expect("objects");
        let items: Vec<&Value> = objects
            .iter()
            .filter(|((k, _), v)| {
                k == kind
                    && terms
                        .iter()
                        .all(|(l, want)| v["metadata"]["labels"][*l] == *want)
            })
            .map(|(_, v)| v)
            .collect();
        Ok(json!({"items": items, "metadata": {"resourceVersion": self.rv.lock().expect("rv").to_string()}}).to_string())
    }

    fn create(&mut self, kind: &Kind, object: &str) -> Result<String, ClusterError> {
        self.record(format!("create {kind} {object}"));
        let mut v = Self::parse(object)?;
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ClusterError::Invalid(
                "metadata.name: Required value".into(),
            ));
        }
        let key = (kind.clone(), name.clone());
        if self.objects.lock().expect("objects").contains_key(&key) {
            return Err(ClusterError::Conflict(format!(
                "{kind} {name:?} already exists"
            )));
        }
        v["metadata"]["resourceVersion"] = self.next_rv().into();
        self.objects.lock().expect("objects").insert(key, v.clone());
        Ok(v.to_string())
    }

    fn replace(&mut self, kind: &Kind, name: &str, object: &str) -> Result<String, ClusterError> {
        self.record(format!("replace {kind} {name} {object}"));
        let mut v = Self::parse(object)?;
        let key = (kind.clone(), name.to_string());
        let stored_rv = self
            .objects
            .lock()
            .expect("objects")
            .get(&key)
            .map(|s| s["metadata"]["resourceVersion"].clone())
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))?;
        if v["metadata"]["resourceVersion"] != stored_rv {
            return Err(ClusterError::Conflict(format!(
                "{kind} {name:?} has been modified"
            )));
        }
        v["metadata"]["resourceVersion"] = self.next_rv().into();
        self.objects.lock().expect("objects").insert(key, v.clone());
        Ok(v.to_string())
    }

    fn replace_status(
        &mut self,
        kind: &Kind,
        name: &str,
        object: &str,
    ) -> Result<String, ClusterError> {
        self.record(format!("replace-status {kind} {name}"));
        let mut v = Self::parse(object)?;
        let key = (kind.clone(), name.to_string());
        let mut objects = self.objects.lock().expect("objects");
        let stored = objects
            .get_mut(&key)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))?;
        if v["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
            return Err(ClusterError::Conflict(format!(
                "{kind} {name:?} has been modified"
            )));
        }
        stored["status"] = v["status"].take();
        stored["metadata"]["resourceVersion"] = self.next_rv().into();
        Ok(stored.to_string())
    }

    fn patch_status(
        &mut self,
        kind: &Kind,
        name: &str,
        patch: &json_patch::Patch,
    ) -> Result<String, ClusterError> {
        self.record(format!("patch-status {kind} {name} {patch}"));
        let key = (kind.clone(), name.to_string());
        let mut objects = self.objects.lock().expect("objects");
        let stored = objects
            .get_mut(&key)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))?;
        *stored = patch_status_of(stored, patch)?;
        stored["metadata"]["resourceVersion"] = self.next_rv().into();
        Ok(stored.to_string())
    }

    fn delete(&mut self, kind: &Kind, name: &str) -> Result<(), ClusterError> {
        self.record(format!("delete {kind} {name}"));
        self.objects
            .lock()
            .expect("objects")
            .remove(&(kind.clone(), name.to_string()))
            .map(drop)
            .ok_or_else(|| ClusterError::NotFound(format!("{kind} {name:?}")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn pools() -> Kind {
        Kind {
            group: "whereabouts.cni.cncf.io".into(),
            version: "v1alpha1".into(),
            plural: "ippools".into(),
        }
    }

    #[test]
    fn grant_names_the_group() {
        let g = ClusterGrant {
            groups: vec!["whereabouts.cni.cncf.io".into()],
            node: "node1".into(),
        };
        g.check("whereabouts", &pools(), None).unwrap();
        let mut secrets = pools();
        secrets.group = String::new();
        secrets.plural = "secrets".into();
        let e = g.check("whereabouts", &secrets, None).unwrap_err();
        assert!(matches!(e, ClusterError::Denied(m) if m.contains("\"\"")));
    }

    #[test]
    fn a_status_patch_is_guarded_by_its_tests_alone() {
        let mut c = RecordingCluster::default();
        let k = pools();
        let patch = |c: &mut RecordingCluster, name: &str, p: &str| {
            let ops = checked_status_patch(p)?;
            c.patch_status(&k, name, &ops)
        };
        c.create(
            &pools(),
            r#"{"metadata":{"name":"p"},"spec":{"range":"a"}}"#,
        )
        .unwrap();
        let stored: Value = serde_json::from_str(&c.get(&pools(), "p").unwrap()).unwrap();
        let first = r#"[{"op":"add","path":"/status","value":{"slots":["",""]}}]"#;
        patch(&mut c, "p", first).unwrap();
        // Two writers of different slots, neither knowing the other's
        // version: both land.
        let claim = |i: usize, who: &str| {
            format!(
                r#"[{{"op":"test","path":"/status/slots/{i}","value":""}},{{"op":"replace","path":"/status/slots/{i}","value":"{who}"}}]"#
            )
        };
        patch(&mut c, "p", &claim(0, "a")).unwrap();
        let after: Value =
            serde_json::from_str(&patch(&mut c, "p", &claim(1, "b")).unwrap()).unwrap();
        assert_eq!(after["status"]["slots"], json!(["a", "b"]));
        assert_ne!(
            after["metadata"]["resourceVersion"],
            stored["metadata"]["resourceVersion"]
        );
        // The same slot again: its test fails, nothing changes.
        let e = patch(&mut c, "p", &claim(0, "c")).unwrap_err();
        assert!(
            matches!(&e, ClusterError::Conflict(m) if m.contains("/status/slots/0")),
            "{e:?}"
        );
        let now: Value = serde_json::from_str(&c.get(&pools(), "p").unwrap()).unwrap();
        assert_eq!(now["status"]["slots"], json!(["a", "b"]));
        assert!(matches!(
            patch(&mut c, "q", "[]"),
            Err(ClusterError::NotFound(_))
        ));
        assert!(matches!(
            patch(
                &mut c,
                "p",
                r#"[{"op":"replace","path":"/status/none/0","value":1}]"#
            ),
            Err(ClusterError::Invalid(_))
        ));
    }

    /// A guest's selector selects by what its pairs say and nothing else:
    /// no second term, operator or query parameter smuggled in a key or a
    /// value.
    #[test]
    fn a_label_selector_is_pairs_of_labels() {
        let sel = |pairs: &[(&str, &str)]| {
            let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            checked_selector(&text.join(","))
        };
        assert_eq!(sel(&[]).unwrap(), "");
        assert_eq!(
            sel(&[("multus-wasm.io/owner", "0123abcd"), ("app", "")]).unwrap(),
            "multus-wasm.io/owner=0123abcd,app="
        );
        for bad in [
            ("a", "b,c"),
            ("a", "=b"),
            ("a", "b=c"),
            ("a", "b&limit=1"),
            ("a!", "b"),
            ("a", "b#x"),
            ("a in (b)", "c"),
            ("", "b"),
            ("/a", "b"),
            ("Ex.com/a", "b"),
            ("a/b/c", "d"),
            ("-a", "b"),
            ("a", "-b"),
            ("a", "b%2Cc"),
            ("a", "b c"),
            ("a", "\u{ff41}"),
        ] {
            assert!(
                matches!(sel(&[bad]), Err(ClusterError::Invalid(_))),
                "{bad:?} must be refused"
            );
        }
        for bad in ["a", "a=b,", ",a=b", "a=b,,c=d", "a==b", "a!=b"] {
            assert!(checked_selector(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(sel(&[("a", &"b".repeat(64))]).is_err());
        assert!(sel(&[(&format!("{}/a", "b".repeat(254)), "c")]).is_err());
        let many: Vec<String> = (0..=MAX_SELECTOR_LABELS)
            .map(|i| format!("k{i}=v"))
            .collect();
        assert!(checked_selector(&many.join(",")).is_err());
        assert!(checked_selector(&"a".repeat(MAX_SELECTOR_BYTES + 1)).is_err());
        // The recording backend lists what the selector picks.
        let mut c = RecordingCluster::default();
        for (n, owner) in [("a", "x"), ("b", "y"), ("c", "x")] {
            c.create(
                &pools(),
                &json!({"metadata": {"name": n, "labels": {"o": owner}}}).to_string(),
            )
            .unwrap();
        }
        let listed: Value = serde_json::from_str(&c.list(&pools(), "o=x").unwrap()).unwrap();
        let names: Vec<&str> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    /// What a guest's patch may be, before any backend sees it: found by
    /// an attacker helper, a kilobyte of `copy` ops doubling the status 30
    /// times (120 GB where the host applies it), a root replace that
    /// panicked the host, paths outside the status.
    #[test]
    fn a_status_patch_is_bounded_at_the_boundary() {
        let refused = |p: &str| matches!(checked_status_patch(p), Err(ClusterError::Invalid(_)));
        let mut doubling =
            vec![json!({"op": "add", "path": "/status/a", "value": "x".repeat(100)})];
        for i in 0..30 {
            doubling
                .push(json!({"op": "copy", "from": "/status", "path": format!("/status/b{i}")}));
        }
        assert!(refused(&Value::from(doubling).to_string()));
        assert!(refused(
            r#"[{"op":"move","from":"/status/a","path":"/status/b"}]"#
        ));
        assert!(refused(r#"[{"op":"replace","path":"","value":1}]"#));
        assert!(refused(
            r#"[{"op":"replace","path":"/spec/range","value":"b"}]"#
        ));
        assert!(refused(
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#
        ));
        assert!(refused(r#"[{"op":"test","path":"/statusx","value":1}]"#));
        assert!(refused("{"));
        let many: Vec<Value> = (0..=MAX_PATCH_OPS)
            .map(|_| json!({"op": "test", "path": "/status", "value": null}))
            .collect();
        assert!(refused(&Value::from(many).to_string()));
        let big = json!([{"op": "add", "path": "/status/a", "value": "x".repeat(MAX_PATCH_BYTES)}]);
        assert!(refused(&big.to_string()));
        checked_status_patch(
            r#"[{"op":"add","path":"/status","value":{}},{"op":"remove","path":"/status/x"}]"#,
        )
        .unwrap();
        // Whatever a stored object is, applying a checked patch never panics.
        let ops = checked_status_patch(r#"[{"op":"add","path":"/status","value":1}]"#).unwrap();
        assert!(patch_status_of(&json!(7), &ops).is_err());
    }

    #[test]
    fn an_object_is_bounded_before_it_is_parsed() {
        let big = "x".repeat(MAX_OBJECT_BYTES + 1);
        assert!(
            matches!(checked_object(&big), Err(ClusterError::Invalid(m)) if m.contains("over"))
        );
        assert_eq!(checked_object("{}").unwrap(), "{}");
    }

    #[test]
    fn names_and_kinds_stay_path_segments() {
        let g = ClusterGrant {
            groups: vec!["whereabouts.cni.cncf.io".into()],
            node: "node1".into(),
        };
        g.check("w", &pools(), Some("10.1.0.0-24")).unwrap();
        g.check("w", &pools(), Some("net-node1-fd00--0-64"))
            .unwrap();
        // One long part (an IPv6 slice's pool), a node name with dots, and
        // a name only the API server refuses (it answers 404).
        for name in [
            "macvlan-ipv6-worker-node-01-2001-db8-aaaa-bbbb-cccc-dddd-eeee-0-120",
            "net-node1.example.com-10.0.0.0-26",
            "Macvlan_Conf",
        ] {
            g.check("w", &pools(), Some(name)).unwrap();
        }
        g.check("w", &pools(), None).unwrap();
        for name in [
            "victim#",
            "victim?x=",
            "a/b",
            "a%2Fb",
            "..",
            ".",
            "",
            "a b",
            &"a".repeat(254),
        ] {
            let e = g.check("w", &pools(), Some(name)).unwrap_err();
            assert!(matches!(e, ClusterError::Denied(_)), "{name:?}");
        }
        let mut k = pools();
        k.version = "v1alpha1/namespaces/other/nodeslicepools/victim/status#".into();
        assert!(g.check("w", &k, None).is_err());
        let mut k = pools();
        k.plural = "ippools/x".into();
        assert!(g.check("w", &k, None).is_err());
    }

    #[test]
    fn recording_backend_keeps_resource_versions() {
        let mut c = RecordingCluster::default();
        let k = pools();
        assert!(matches!(c.get(&k, "p"), Err(ClusterError::NotFound(_))));
        let created: Value = serde_json::from_str(
            &c.create(&k, r#"{"metadata":{"name":"p"},"spec":{}}"#)
                .unwrap(),
        )
        .unwrap();
        assert!(matches!(
            c.create(&k, r#"{"metadata":{"name":"p"}}"#),
            Err(ClusterError::Conflict(_))
        ));
        let stale = r#"{"metadata":{"name":"p","resourceVersion":"0"}}"#;
        assert!(matches!(
            c.replace(&k, "p", stale),
            Err(ClusterError::Conflict(_))
        ));
        let mut fresh = created.clone();
        fresh["spec"]["x"] = 1.into();
        let replaced: Value =
            serde_json::from_str(&c.replace(&k, "p", &fresh.to_string()).unwrap()).unwrap();
        assert_ne!(
            replaced["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        c.delete(&k, "p").unwrap();
        assert_eq!(c.ops.lock().unwrap().len(), 6);
    }
}

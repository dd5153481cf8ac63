//! Annotation mappers: the conf's `annotationMappers`, wasm components run in
//! order between reading the selection annotations and resolving NADs.
//! What a mapper returns is validated exactly like the annotation.

use k8s_openapi::api::core::v1::Pod;
use multus_host_functions::bindings::mapper::exports::multus::plugin::mapper as wit;
use serde_json::{Map, Value};

use super::pod::{self, PodRef};
use super::selection::{self, NetworkSelection, MAX_SELECTIONS};
use crate::cni::{CniError, Code};
use crate::config::kube::MapperRef;
use crate::config::WasmConf;
use crate::delegate::{wasm, PluginError};

/// The most text one of a mapper's selections may carry and all of them
/// together (the API server's bound on all of a pod's annotations): far
/// above any pod's, low enough that a hostile module cannot have multus
/// parse megabytes of `cni-args` (tens of bytes of host memory per byte of
/// JSON). The most networks it may select is a pod's (`MAX_SELECTIONS`).
const MAX_SELECTION_BYTES: usize = 64 * 1024;
const MAX_MAPPER_BYTES: usize = 256 * 1024;

/// Runs every mapper over `selected`.
pub fn run(
    wasm_conf: &WasmConf,
    mappers: &[MapperRef],
    pod_ref: &PodRef,
    pod: &Pod,
    mut selected: Vec<NetworkSelection>,
) -> Result<Vec<NetworkSelection>, CniError> {
    if mappers.is_empty() {
        return Ok(selected);
    }
    let meta = metadata(pod_ref, pod);
    for m in mappers {
        let module = wasm_conf.plugin_dir.join(format!("{}.wasm", m.module));
        let fail = |msg: String| {
            CniError::new(
                Code::InvalidConfig,
                format!("pod {pod_ref}: annotation mapper {:?}: {msg}", m.module),
            )
        };
        if !module.is_file() {
            return Err(fail(format!("no module {}", module.display())));
        }
        let input: Vec<wit::NetworkSelection> = selected.iter().map(to_wit).collect();
        let config = Value::Object(m.config.clone()).to_string();
        let out = wasm::map(wasm_conf, &m.module, &module, &config, &meta, &input).map_err(
            |e| match e {
                PluginError::Cni(e) => e.context(format!("pod {pod_ref}")),
                other => fail(other.to_string()),
            },
        )?;
        bounded(&out).map_err(fail)?;
        selected = out
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                from_wit(s, &pod_ref.namespace).map_err(|e| fail(format!("element {i}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        tracing::debug!(pod = %pod_ref, mapper = %m.module, networks = selected.len(), "annotation mapper ran");
    }
    Ok(selected)
}

fn metadata(pod_ref: &PodRef, p: &Pod) -> wit::PodMetadata {
    wit::PodMetadata {
        namespace: pod_ref.namespace.clone(),
        name: pod_ref.name.clone(),
        labels: pod::labels(p).into_iter().collect(),
        annotations: pod::annotations(p).into_iter().collect(),
    }
}

fn json_text<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref()
        .map(|v| serde_json::to_string(v).expect("JSON values serialize"))
}

pub fn to_wit(s: &NetworkSelection) -> wit::NetworkSelection {
    wit::NetworkSelection {
        name: s.name.clone(),
        namespace: Some(s.namespace.clone()),
        interface: s.interface.clone(),
        ips: s.ips.clone(),
        mac: s.mac.clone(),
        default_route: s
            .default_route
            .as_ref()
            .map(|g| g.iter().map(ToString::to_string).collect()),
        cni_args: json_text(&s.cni_args),
        port_mappings: json_text(&s.port_mappings),
        bandwidth: json_text(&s.bandwidth),
        infiniband_guid: s.infiniband_guid.clone(),
        ipam_claim_reference: s.ipam_claim_reference.clone(),
        device_id: s.device_id.clone(),
    }
}

/// A mapper's whole output within the caps, before any of it is parsed.
fn bounded(out: &[wit::NetworkSelection]) -> Result<(), String> {
    if out.len() > MAX_SELECTIONS {
        return Err(format!(
            "it selected {} networks (at most {MAX_SELECTIONS})",
            out.len()
        ));
    }
    let bytes: usize = out.iter().map(text_bytes).sum();
    if bytes > MAX_MAPPER_BYTES {
        return Err(format!(
            "its selections carry {bytes} bytes of text (at most {MAX_MAPPER_BYTES})"
        ));
    }
    Ok(())
}

/// The bytes of text a mapper's selection carries.
fn text_bytes(s: &wit::NetworkSelection) -> usize {
    [&s.name]
        .into_iter()
        .chain(&s.namespace)
        .chain(&s.interface)
        .chain(&s.ips)
        .chain(&s.mac)
        .chain(s.default_route.iter().flatten())
        .chain(&s.cni_args)
        .chain(&s.port_mappings)
        .chain(&s.bandwidth)
        .chain(&s.infiniband_guid)
        .chain(&s.ipam_claim_reference)
        .chain(&s.device_id)
        .map(String::len)
        .sum()
}

/// A mapper's element as the spec's JSON element, through the annotation's
/// validator.
pub fn from_wit(s: wit::NetworkSelection, pod_namespace: &str) -> Result<NetworkSelection, String> {
    let bytes = text_bytes(&s);
    if bytes > MAX_SELECTION_BYTES {
        return Err(format!(
            "{bytes} bytes of text (at most {MAX_SELECTION_BYTES})"
        ));
    }
    let mut o = Map::new();
    o.insert("name".into(), s.name.into());
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put("namespace", s.namespace.map(Value::from));
    put("interface", s.interface.map(Value::from));
    put("ips", (!s.ips.is_empty()).then(|| s.ips.into()));
    put("mac", s.mac.map(Value::from));
    put("default-route", s.default_route.map(Value::from));
    put("infiniband-guid", s.infiniband_guid.map(Value::from));
    put(
        "ipam-claim-reference",
        s.ipam_claim_reference.map(Value::from),
    );
    put("deviceID", s.device_id.map(Value::from));
    for (key, text) in [
        ("cni-args", s.cni_args),
        ("portMappings", s.port_mappings),
        ("bandwidth", s.bandwidth),
    ] {
        if let Some(t) = text {
            let v: Value =
                serde_json::from_str(&t).map_err(|e| format!("{key:?} is not JSON: {e}"))?;
            o.insert(key.into(), v);
        }
    }
    selection::element(Value::Object(o), pod_namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let s = selection::parse(
            r#"[{"name":"a","namespace":"n","interface":"x1","ips":["10.0.0.1/24"],"mac":"02:00:00:00:00:01",
                "default-route":["10.0.0.254"],"cni-args":{"k":"v"},
                "portMappings":[{"hostPort":80,"containerPort":8080}],"bandwidth":{"ingressRate":1},
                "infiniband-guid":"00:11:22:33:44:55:66:77","deviceID":"0000:01:00.1"}]"#,
            "pods",
        )
        .unwrap()
        .remove(0);
        assert_eq!(from_wit(to_wit(&s), "pods").unwrap(), s);
    }

    #[test]
    fn invalid_mapper_output_is_refused() {
        let mut w = to_wit(&selection::parse("a", "pods").unwrap().remove(0));
        w.namespace = None;
        assert_eq!(from_wit(w.clone(), "pods").unwrap().namespace, "pods");
        w.interface = Some("bad/name".into());
        assert!(from_wit(w.clone(), "pods")
            .unwrap_err()
            .contains("\"interface\""));
        w.interface = None;
        w.cni_args = Some("{not json".into());
        assert!(from_wit(w.clone(), "pods")
            .unwrap_err()
            .contains("\"cni-args\" is not JSON"));
        // Bounded before any of it is parsed.
        w.cni_args = Some(format!("[{}0]", "0,".repeat(MAX_SELECTION_BYTES)));
        assert!(from_wit(w, "pods")
            .unwrap_err()
            .contains("bytes of text (at most 65536)"));
    }

    #[test]
    fn a_mappers_whole_output_is_bounded() {
        let one = to_wit(&selection::parse("a", "pods").unwrap().remove(0));
        assert_eq!(bounded(&vec![one.clone(); MAX_SELECTIONS]), Ok(()));
        assert_eq!(
            bounded(&vec![one.clone(); MAX_SELECTIONS + 1]).unwrap_err(),
            "it selected 257 networks (at most 256)"
        );
        // Each selection under its own cap, five of them over the total.
        let mut big = one;
        big.cni_args = Some("x".repeat(MAX_SELECTION_BYTES - 1024));
        assert!(bounded(&vec![big; 5])
            .unwrap_err()
            .contains("bytes of text (at most 262144)"));
    }
}

//! The network selection annotation (multi-net spec §4): the comma form
//! `[ns/]name[@ifname]` and the JSON list, parsed into validated elements.
//!
//! Every field is checked here, before any network is touched, and an error
//! names the annotation key and the element. Besides the spec's keys the JSON
//! form takes the aliases older Multus variants wrote: `interfaceRequest`
//! (Multus < 3.2 and TKE), `ipRequest` (a string or a list) and `macRequest`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value};

use multus_host_functions::text::{parser_message, quoted};

use crate::cni::env::validate_ifname;

/// One requested attachment, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSelection {
    pub name: String,
    /// The NAD's namespace; the pod's when the element names none.
    pub namespace: String,
    pub interface: Option<String>,
    /// Each an IP or a CIDR, as written.
    pub ips: Vec<String>,
    pub mac: Option<String>,
    /// `Some(vec![])` keeps this attachment's own default route and removes
    /// the others'.
    pub default_route: Option<Vec<IpAddr>>,
    pub cni_args: Option<Map<String, Value>>,
    pub port_mappings: Option<Vec<Value>>,
    pub bandwidth: Option<Map<String, Value>>,
    pub infiniband_guid: Option<String>,
    pub ipam_claim_reference: Option<String>,
    pub device_id: Option<String>,
}

impl NetworkSelection {
    /// `<namespace>/<name>`: how network-status and the logs name it.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Capability args for the delegate (libcni filters them by the plugins'
    /// `capabilities`), under the keys upstream Multus uses.
    pub fn capability_args(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(p) = &self.port_mappings {
            m.insert("portMappings".into(), Value::Array(p.clone()));
        }
        if let Some(b) = &self.bandwidth {
            m.insert("bandwidth".into(), Value::Object(b.clone()));
        }
        if !self.ips.is_empty() {
            m.insert("ips".into(), self.ips.clone().into());
        }
        if let Some(mac) = &self.mac {
            m.insert("mac".into(), mac.clone().into());
        }
        if let Some(g) = &self.infiniband_guid {
            m.insert("infinibandGUID".into(), g.clone().into());
        }
        if let Some(d) = &self.device_id {
            m.insert("deviceID".into(), d.clone().into());
        }
        m
    }

    /// The legacy `CNI_ARGS` pairs (`IP=a,b`, `MAC=..`) plugins that predate
    /// runtimeConfig read.
    pub fn legacy_cni_args(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(mac) = &self.mac {
            out.push(("MAC".to_string(), mac.clone()));
        }
        if !self.ips.is_empty() {
            out.push(("IP".to_string(), self.ips.join(",")));
        }
        out
    }
}

/// A selection that cannot be used; the message names the element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectionError(pub String);

/// The most networks one pod may select (its annotation, or a mapper):
/// far above any pod's, low enough that a pod cannot have multus resolve,
/// attach, cache and log thousands (upstream has no bound).
pub const MAX_SELECTIONS: usize = 256;

pub fn counted(n: usize) -> Result<(), SelectionError> {
    if n > MAX_SELECTIONS {
        return Err(SelectionError(format!(
            "{n} networks selected, at most {MAX_SELECTIONS}"
        )));
    }
    Ok(())
}

/// Parses one annotation value. `pod_namespace` fills elements without one.
pub fn parse(value: &str, pod_namespace: &str) -> Result<Vec<NetworkSelection>, SelectionError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    // The spec's test for the JSON form (upstream's strings.ContainsAny).
    if value.contains(['[', '{', '"']) {
        parse_json(value, pod_namespace)
    } else {
        let items: Vec<&str> = value.split(',').collect();
        counted(items.len())?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                parse_short(item.trim(), pod_namespace).map_err(|m| {
                    SelectionError(format!("element {i} ({:?}): {m}", quoted(item.trim())))
                })
            })
            .collect()
    }
}

/// `[ns/]name[@ifname]`.
fn parse_short(item: &str, pod_namespace: &str) -> Result<NetworkSelection, String> {
    let (rest, interface) = match item.split_once('@') {
        Some((r, i)) => {
            if i.contains('@') {
                return Err("more than one '@'".into());
            }
            validate_ifname(i)?;
            (r, Some(i.to_string()))
        }
        None => (item, None),
    };
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, n)) => {
            if n.contains('/') {
                return Err("more than one '/'".into());
            }
            validate_dns_label(ns, "namespace")?;
            (ns.to_string(), n)
        }
        None => (pod_namespace.to_string(), rest),
    };
    validate_dns_label(name, "name")?;
    Ok(NetworkSelection {
        name: name.to_string(),
        namespace,
        interface,
        ..Default::default()
    })
}

/// One JSON element as written, before validation.
#[derive(Deserialize)]
struct Element {
    name: Option<String>,
    namespace: Option<String>,
    interface: Option<String>,
    #[serde(rename = "interfaceRequest")]
    interface_request: Option<String>,
    ips: Option<Vec<String>>,
    #[serde(rename = "ipRequest")]
    ip_request: Option<OneOrMany>,
    mac: Option<String>,
    #[serde(rename = "macRequest")]
    mac_request: Option<String>,
    #[serde(rename = "default-route")]
    default_route: Option<Vec<String>>,
    #[serde(rename = "cni-args")]
    cni_args: Option<Map<String, Value>>,
    #[serde(rename = "portMappings")]
    port_mappings: Option<Vec<Value>>,
    bandwidth: Option<Map<String, Value>>,
    #[serde(rename = "infiniband-guid")]
    infiniband_guid: Option<String>,
    #[serde(rename = "ipam-claim-reference")]
    ipam_claim_reference: Option<String>,
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
    /// Keys with a '.' are extensions (spec §4.1.2.1): allowed, ignored.
    #[serde(flatten)]
    extensions: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn parse_json(value: &str, pod_namespace: &str) -> Result<Vec<NetworkSelection>, SelectionError> {
    let items: Vec<Value> = serde_json::from_str(value).map_err(|e| {
        SelectionError(format!(
            "not a JSON list of selection elements: {}",
            parser_message(e)
        ))
    })?;
    counted(items.len())?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let shown = item
                .get("name")
                .and_then(Value::as_str)
                .map(|n| format!(" ({:?})", quoted(n)))
                .unwrap_or_default();
            element(item, pod_namespace)
                .map_err(|m| SelectionError(format!("element {i}{shown}: {m}")))
        })
        .collect()
}

/// One JSON element, validated; errors name the field.
pub fn element(item: Value, pod_namespace: &str) -> Result<NetworkSelection, String> {
    if !item.is_object() {
        return Err("not a JSON object".into());
    }
    let e: Element = match serde_json::from_value(item) {
        Ok(e) => e,
        // serde's message quotes the offending value whole.
        Err(err) => return Err(parser_message(err)),
    };
    if let Some(k) = e.extensions.keys().find(|k| !k.contains('.')) {
        return Err(format!(
            "unknown key {:?} (keys without a '.' are reserved by the spec)",
            quoted(k)
        ));
    }
    let name = e.name.ok_or("\"name\" is required")?;
    validate_dns_label(&name, "\"name\"")?;
    let namespace = match e.namespace.filter(|n| !n.is_empty()) {
        Some(ns) => {
            validate_dns_label(&ns, "\"namespace\"")?;
            ns
        }
        None => pod_namespace.to_string(),
    };
    let interface = match (e.interface, e.interface_request) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() && a != b => {
            return Err(format!(
                "\"interface\" {:?} and \"interfaceRequest\" {:?} disagree",
                quoted(&a),
                quoted(&b)
            ))
        }
        (a, b) => a.filter(|s| !s.is_empty()).or(b.filter(|s| !s.is_empty())),
    };
    if let Some(i) = &interface {
        validate_ifname(i).map_err(|m| format!("\"interface\": {m}"))?;
    }
    let mut ips = e.ips.unwrap_or_default();
    match e.ip_request {
        Some(OneOrMany::One(s)) if !s.is_empty() => ips.push(s),
        Some(OneOrMany::Many(v)) => ips.extend(v),
        _ => {}
    }
    for ip in &ips {
        if ip.parse::<IpAddr>().is_err() && ip.parse::<IpNet>().is_err() {
            return Err(format!(
                "\"ips\": {:?} is neither an IP nor a CIDR",
                quoted(ip)
            ));
        }
    }
    if !ips.is_empty() && e.ipam_claim_reference.is_some() {
        return Err("\"ips\" and \"ipam-claim-reference\" are mutually exclusive".into());
    }
    let mac = e.mac.or(e.mac_request).filter(|m| !m.is_empty());
    if let Some(m) = &mac {
        parse_hw_addr(m, 6).map_err(|r| format!("\"mac\": {:?} {r}", quoted(m)))?;
    }
    if let Some(g) = &e.infiniband_guid {
        parse_hw_addr(g, 8).map_err(|r| format!("\"infiniband-guid\": {:?} {r}", quoted(g)))?;
    }
    let default_route = e
        .default_route
        .map(|gws| {
            gws.iter()
                .map(|g| {
                    g.parse::<IpAddr>().map_err(|_| {
                        format!("\"default-route\": {:?} is not an IP address", quoted(g))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    if let Some(pm) = &e.port_mappings {
        for (i, p) in pm.iter().enumerate() {
            validate_port_mapping(p).map_err(|m| format!("\"portMappings\"[{i}]: {m}"))?;
        }
    }
    if let Some(b) = &e.bandwidth {
        validate_bandwidth(b).map_err(|m| format!("\"bandwidth\": {m}"))?;
    }
    Ok(NetworkSelection {
        name,
        namespace,
        interface,
        ips,
        mac,
        default_route,
        cni_args: e.cni_args,
        port_mappings: e.port_mappings,
        bandwidth: e.bandwidth,
        infiniband_guid: e.infiniband_guid,
        ipam_claim_reference: e.ipam_claim_reference.filter(|s| !s.is_empty()),
        device_id: e.device_id.filter(|s| !s.is_empty()),
    })
}

/// Kubernetes object and namespace names: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63.
pub fn validate_dns_label(s: &str, what: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {:?} is not a DNS-1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)",
            quoted(s)
        ))
    }
}

/// A colon- or dash-separated hardware address of exactly `len` bytes.
fn parse_hw_addr(s: &str, len: usize) -> Result<(), String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == len
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!("is not a {len}-byte hardware address"))
    }
}

fn validate_port_mapping(p: &Value) -> Result<(), String> {
    let o = p.as_object().ok_or("not an object")?;
    for key in ["hostPort", "containerPort"] {
        match o.get(key).and_then(Value::as_u64) {
            Some(1..=65535) => {}
            _ => return Err(format!("{key:?} must be a port number 1-65535")),
        }
    }
    if let Some(proto) = o.get("protocol") {
        match proto.as_str().map(str::to_ascii_uppercase).as_deref() {
            Some("TCP" | "UDP" | "SCTP") => {}
            _ => {
                return Err(format!(
                    "\"protocol\" {} is not TCP, UDP or SCTP",
                    quoted(&proto.to_string())
                ))
            }
        }
    }
    if let Some(ip) = o.get("hostIP") {
        if ip.as_str().is_none_or(|s| s.parse::<IpAddr>().is_err()) {
            return Err(format!(
                "\"hostIP\" {} is not an IP address",
                quoted(&ip.to_string())
            ));
        }
    }
    Ok(())
}

fn validate_bandwidth(b: &Map<String, Value>) -> Result<(), String> {
    const KEYS: [&str; 4] = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"];
    for (k, v) in b {
        if !KEYS.contains(&k.as_str()) {
            return Err(format!(
                "unknown key {:?} (want one of {KEYS:?})",
                quoted(k)
            ));
        }
        if v.as_u64().is_none() {
            return Err(format!("{:?} must be a non-negative integer", quoted(k)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> NetworkSelection {
        let mut l = parse(v, "pods").unwrap();
        assert_eq!(l.len(), 1, "{v}");
        l.remove(0)
    }

    fn err(v: &str) -> String {
        parse(v, "pods").unwrap_err().0
    }

    #[test]
    fn comma_form() {
        let l = parse(" net-a, other/net-b , net-c@eth5,x/y@z1", "pods").unwrap();
        let got: Vec<_> = l
            .iter()
            .map(|s| {
                (
                    s.namespace.as_str(),
                    s.name.as_str(),
                    s.interface.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("pods", "net-a", None),
                ("other", "net-b", None),
                ("pods", "net-c", Some("eth5")),
                ("x", "y", Some("z1")),
            ]
        );
        assert_eq!(parse("", "pods").unwrap(), vec![]);
        assert_eq!(parse("  ", "pods").unwrap(), vec![]);
    }

    #[test]
    fn comma_form_errors_name_the_element() {
        for (v, want) in [
            ("a,,b", "element 1 (\"\")"),
            ("a/b/c", "more than one '/'"),
            ("a@b@c", "more than one '@'"),
            ("Net", "DNS-1123"),
            ("-a", "DNS-1123"),
            ("ns_1/a", "namespace \"ns_1\""),
            ("a@", "empty"),
            ("a@waytoolonginterface0", "longer than 15"),
            ("a@x:y", "':'"),
        ] {
            let e = err(v);
            assert!(e.contains(want), "{v}: {e}");
        }
        assert!(err(&"a".repeat(64)).contains("63"));
    }

    #[test]
    fn every_json_field() {
        let s = one(
            r#"[{"name":"sriov","namespace":"net","interface":"vf0","ips":["10.1.1.5/24","fd00::5"],
                "mac":"02:00:00:00:00:01","default-route":["10.1.1.1"],"cni-args":{"foo":"bar"},
                "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"1.2.3.4"}],
                "bandwidth":{"ingressRate":1000,"egressBurst":20},
                "infiniband-guid":"00:11:22:33:44:55:66:77","deviceID":"0000:03:00.1",
                "example.com/ext":{"any":1}}]"#,
        );
        assert_eq!(s.qualified_name(), "net/sriov");
        assert_eq!(s.interface.as_deref(), Some("vf0"));
        assert_eq!(s.ips, vec!["10.1.1.5/24", "fd00::5"]);
        assert_eq!(s.default_route, Some(vec!["10.1.1.1".parse().unwrap()]));
        assert_eq!(s.cni_args.as_ref().unwrap()["foo"], "bar");
        let caps = s.capability_args();
        assert_eq!(
            caps.keys().collect::<Vec<_>>(),
            vec![
                "portMappings",
                "bandwidth",
                "ips",
                "mac",
                "infinibandGUID",
                "deviceID"
            ]
        );
        assert_eq!(caps["portMappings"][0]["hostPort"], 8080);
        assert_eq!(caps["bandwidth"]["ingressRate"], 1000);
        assert_eq!(caps["deviceID"], "0000:03:00.1");
        assert_eq!(
            s.legacy_cni_args(),
            vec![
                ("MAC".to_string(), "02:00:00:00:00:01".to_string()),
                ("IP".to_string(), "10.1.1.5/24,fd00::5".to_string())
            ]
        );
        let c = one(r#"[{"name":"c","ipam-claim-reference":"claim-1","default-route":[]}]"#);
        assert_eq!(c.ipam_claim_reference.as_deref(), Some("claim-1"));
        assert_eq!(c.default_route, Some(vec![]));
        assert_eq!(c.namespace, "pods");
        assert!(c.capability_args().is_empty() && c.legacy_cni_args().is_empty());
    }

    #[test]
    fn legacy_aliases() {
        let s = one(
            r#"[{"name":"a","interfaceRequest":"eth1","ipRequest":"10.0.0.9","macRequest":"02-00-00-00-00-09"}]"#,
        );
        assert_eq!(s.interface.as_deref(), Some("eth1"));
        assert_eq!(s.ips, vec!["10.0.0.9"]);
        assert_eq!(s.mac.as_deref(), Some("02-00-00-00-00-09"));
        let s = one(
            r#"[{"name":"a","interface":"eth1","interfaceRequest":"eth1","ipRequest":["10.0.0.1","10.0.0.2"]}]"#,
        );
        assert_eq!(s.ips, vec!["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn json_errors_name_element_and_field() {
        for (v, want) in [
            (r#"{"name":"a"}"#, "not a JSON list"),
            (r#"["a"]"#, "element 0: not a JSON object"),
            (r#"[{"namespace":"x"}]"#, "\"name\" is required"),
            (r#"[{"name":"a"},{"name":"B"}]"#, "element 1 (\"B\")"),
            (r#"[{"name":"a","namespace":"N"}]"#, "\"namespace\""),
            (r#"[{"name":"a","interface":"a b"}]"#, "\"interface\""),
            (
                r#"[{"name":"a","interface":"x","interfaceRequest":"y"}]"#,
                "disagree",
            ),
            (
                r#"[{"name":"a","ips":["300.1.1.1"]}]"#,
                "\"ips\": \"300.1.1.1\"",
            ),
            (
                r#"[{"name":"a","ips":["10.0.0.1"],"ipam-claim-reference":"c"}]"#,
                "mutually exclusive",
            ),
            (r#"[{"name":"a","mac":"02:00:00:00:00"}]"#, "\"mac\""),
            (
                r#"[{"name":"a","infiniband-guid":"02:00:00:00:00:00"}]"#,
                "8-byte",
            ),
            (
                r#"[{"name":"a","default-route":["gw"]}]"#,
                "\"default-route\": \"gw\"",
            ),
            (
                r#"[{"name":"a","portMappings":[{"hostPort":0,"containerPort":80}]}]"#,
                "\"portMappings\"[0]: \"hostPort\"",
            ),
            (
                r#"[{"name":"a","portMappings":[{"hostPort":1,"containerPort":80,"protocol":"ICMP"}]}]"#,
                "\"protocol\"",
            ),
            (
                r#"[{"name":"a","bandwidth":{"ingressRate":-1}}]"#,
                "\"ingressRate\"",
            ),
            (
                r#"[{"name":"a","bandwidth":{"rate":1}}]"#,
                "unknown key \"rate\"",
            ),
            (r#"[{"name":"a","cni-args":"x"}]"#, "invalid type"),
            (r#"[{"name":"a","ifname":"x"}]"#, "reserved"),
            (r#"[{"name":"a","ips":"10.0.0.1"}]"#, "invalid type"),
        ] {
            let e = err(v);
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    /// A pod's annotations may hold 256 KiB: an error quotes a value by its
    /// head, in every field it names, so the CNI error (and the kubelet's
    /// event) stays small.
    #[test]
    fn errors_quote_a_hostile_value_by_its_head() {
        use serde_json::json;
        let big = "A".repeat(100_000);
        let pm = |field: &str| {
            json!([{"name": "a", "portMappings": [
                {"hostPort": 1, "containerPort": 80, field: {"x": big}}]}])
        };
        let cases = [
            json!([{"name": big}]),
            json!([{"name": "a", "namespace": big}]),
            json!([{"name": "a", "interface": big}]),
            json!([{"name": "a", "interface": big, "interfaceRequest": "y"}]),
            json!([{"name": "a", "ips": [big]}]),
            json!([{"name": "a", "mac": big}]),
            json!([{"name": "a", "infiniband-guid": big}]),
            json!([{"name": "a", "default-route": [big]}]),
            pm("protocol"),
            pm("hostIP"),
            json!([{"name": "a", "bandwidth": {big.as_str(): 1}}]),
            json!([{"name": "a", big.as_str(): 1}]),
            json!([{"name": "a", "bandwidth": big}]),
        ];
        for v in cases {
            let e = err(&v.to_string());
            assert!(e.len() < 512, "{} bytes: {}", e.len(), &e[..200]);
            assert!(e.contains("AAAA"), "the value is quoted: {e}");
        }
        let e = err(&format!("{big},b"));
        assert!(e.len() < 512 && e.contains("AAAA"), "{}", e.len());
        // At most MAX_SELECTIONS networks, in either form.
        let names = |n: usize| (0..n).map(|i| format!("n{i}")).collect::<Vec<_>>();
        assert_eq!(
            parse(&names(MAX_SELECTIONS).join(","), "d").unwrap().len(),
            MAX_SELECTIONS
        );
        let e = err(&names(MAX_SELECTIONS + 1).join(","));
        assert!(e.contains("257 networks"), "{e}");
        let listed = |n: usize| {
            json!(names(n)
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>())
            .to_string()
        };
        assert_eq!(
            parse(&listed(MAX_SELECTIONS), "d").unwrap().len(),
            MAX_SELECTIONS
        );
        assert!(err(&listed(MAX_SELECTIONS + 1)).contains("257 networks"));
    }
}

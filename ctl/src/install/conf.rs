//! The multus conf the container runtime reads: `00-multus.conflist` for a
//! master of CNI 1.0.0 or later, else `00-multus.conf`, as upstream's thin
//! entrypoint writes them, with the master as the cluster network.

use serde_json::{Map, Value};

use super::InstallError;
use multus::cni::version::Version;
use multus::config::master::{self, Master, CONF, CONFLIST};
use multus::config::MultusConf;

/// The network name upstream gives multus's conf.
pub const DEFAULT_NAME: &str = "multus-cni-network";

pub struct Inputs<'a> {
    pub master: &'a Master,
    /// A path (`keep`) or a network name in `confDir` (`move`).
    pub cluster_network: &'a str,
    /// `multus-cni-network`, or the master's name (`--override-network-name`).
    pub name: &'a str,
    /// The generated kubeconfig's host path; a `kubeconfig` in `keys` wins.
    pub kubeconfig: Option<&'a str>,
    /// Multus conf keys from `--config` and flags.
    pub keys: &'a Map<String, Value>,
}

pub struct Rendered {
    pub file_name: &'static str,
    pub bytes: Vec<u8>,
}

/// Renders the conf and checks that multus itself accepts it.
pub fn render(i: &Inputs) -> Result<Rendered, InstallError> {
    let version = i.master.net.cni_version.clone();
    let mut caps = master::capabilities(&i.master.net);
    if let Some(Value::Object(extra)) = i.keys.get("capabilities") {
        for (k, v) in extra {
            if v.as_bool() == Some(true) {
                caps.insert(k.clone(), Value::Bool(true));
            }
        }
    }
    let mut plugin = Map::new();
    plugin.insert("type".into(), "multus".into());
    if !caps.is_empty() {
        plugin.insert("capabilities".into(), Value::Object(caps));
    }
    plugin.insert("clusterNetwork".into(), i.cluster_network.into());
    if let Some(k) = i.kubeconfig {
        plugin.insert("kubeconfig".into(), k.into());
    }
    for (k, v) in i.keys {
        if k != "capabilities" {
            plugin.insert(k.clone(), v.clone());
        }
    }

    // What multus gets on stdin: libcni injects the list's name and version.
    let mut as_called = Map::new();
    as_called.insert("cniVersion".into(), version.clone().into());
    as_called.insert("name".into(), i.name.into());
    as_called.extend(plugin.clone());
    let stdin = serde_json::to_vec(&as_called).expect("JSON values serialize");
    MultusConf::parse(&stdin).map_err(|e| {
        InstallError::Invalid(format!("the generated multus conf is invalid: {}", e.msg))
    })?;

    let conflist = i.master.net.version() >= Version(1, 0, 0);
    let (file_name, doc) = if conflist {
        let mut list = Map::new();
        list.insert("cniVersion".into(), version.into());
        list.insert("name".into(), i.name.into());
        list.insert("plugins".into(), Value::Array(vec![Value::Object(plugin)]));
        (CONFLIST, list)
    } else {
        (CONF, as_called)
    };
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc)).expect("JSON values serialize");
    bytes.push(b'\n');
    Ok(Rendered { file_name, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus::config::NetworkConfig;
    use serde_json::json;

    fn master(body: Value) -> Master {
        let bytes = serde_json::to_vec(&body).unwrap();
        Master {
            file_name: "10-m.conflist".into(),
            net: NetworkConfig::from_bytes(&bytes, "m").unwrap(),
            bytes,
        }
    }

    fn keys(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn conflist_for_1_0_0_masters() {
        let m = master(json!({"cniVersion":"1.0.0","name":"kindnet","plugins":[
            {"type":"ptp","capabilities":{"ips":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}));
        let k = keys(json!({"logLevel":"debug","capabilities":{"bandwidth":true}}));
        let r = render(&Inputs {
            master: &m,
            cluster_network: "/etc/cni/net.d/10-m.conflist",
            name: DEFAULT_NAME,
            kubeconfig: Some("/etc/cni/net.d/multus.d/multus.kubeconfig"),
            keys: &k,
        })
        .unwrap();
        assert_eq!(r.file_name, "00-multus.conflist");
        let v: Value = serde_json::from_slice(&r.bytes).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion":"1.0.0","name":"multus-cni-network","plugins":[{
                "type":"multus",
                "capabilities":{"ips":true,"portMappings":true,"bandwidth":true},
                "clusterNetwork":"/etc/cni/net.d/10-m.conflist",
                "kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig",
                "logLevel":"debug"}]})
        );
    }

    #[test]
    fn conf_for_older_masters_and_config_kubeconfig_wins() {
        let m = master(json!({"cniVersion":"0.3.1","name":"cbr0","type":"bridge"}));
        let k = keys(json!({"kubeconfig":"/etc/kubernetes/multus.conf"}));
        let r = render(&Inputs {
            master: &m,
            cluster_network: "cbr0",
            name: "cbr0",
            kubeconfig: Some("/generated"),
            keys: &k,
        })
        .unwrap();
        assert_eq!(r.file_name, "00-multus.conf");
        let v: Value = serde_json::from_slice(&r.bytes).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion":"0.3.1","name":"cbr0","type":"multus","clusterNetwork":"cbr0",
                   "kubeconfig":"/etc/kubernetes/multus.conf"})
        );
    }

    #[test]
    fn values_multus_would_refuse_are_refused_here() {
        let m = master(json!({"cniVersion":"1.0.0","name":"k","type":"ptp"}));
        let k = keys(json!({"logLevel":"loud"}));
        let e = render(&Inputs {
            master: &m,
            cluster_network: "k",
            name: DEFAULT_NAME,
            kubeconfig: None,
            keys: &k,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("logLevel"), "{e}");
    }
}

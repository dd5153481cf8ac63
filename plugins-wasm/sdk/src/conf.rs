//! The plugin config JSON: common keys, typed, the rest left as JSON.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{invalid, CniError, CniResult, Dns, Interface, IpConfig, Request, Route};

/// Keys every plugin config has; `raw` holds all of it.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub name: String,
    pub cni_version: String,
    pub raw: Map<String, Value>,
}

impl NetConf {
    pub fn parse(req: &Request) -> Result<Self, CniError> {
        let raw: Map<String, Value> = serde_json::from_str(&req.config)
            .map_err(|e| invalid(format!("config is not a JSON object: {e}")))?;
        let s = |k: &str| {
            raw.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(Self {
            name: s("name"),
            cni_version: s("cniVersion"),
            raw,
        })
    }

    /// Decodes one key as `T` (absent or null is `None`); errors name the key.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CniError> {
        match self.raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| invalid(format!("{key}: {e}"))),
        }
    }

    /// `runtimeConfig.<key>`.
    pub fn runtime<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CniError> {
        self.nested("runtimeConfig", key)
    }

    /// `args.cni.<key>`.
    pub fn cni_arg<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CniError> {
        match self
            .raw
            .get("args")
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get(key))
        {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| invalid(format!("args.cni.{key}: {e}"))),
        }
    }

    fn nested<T: DeserializeOwned>(&self, outer: &str, key: &str) -> Result<Option<T>, CniError> {
        match self.raw.get(outer).and_then(|o| o.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| invalid(format!("{outer}.{key}: {e}"))),
        }
    }

    /// `ipam.type`; empty when there is no IPAM (a layer-2 attachment).
    pub fn ipam_type(&self) -> &str {
        self.raw
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The config's own `dns`, when it sets any field (the reference
    /// plugins then prefer it over the IPAM's).
    pub fn dns(&self) -> Result<Option<ConfDns>, CniError> {
        Ok(self.get::<ConfDns>("dns")?.filter(|d| {
            !d.nameservers.is_empty()
                || d.domain.is_some()
                || !d.search.is_empty()
                || !d.options.is_empty()
        }))
    }

    /// The `prevResult`, if any, as a typed result.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        let Some(v) = self.raw.get("prevResult").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let w: WireResult =
            serde_json::from_value(v.clone()).map_err(|e| invalid(format!("prevResult: {e}")))?;
        Ok(Some(w.into()))
    }
}

#[derive(Deserialize, Default)]
struct WireResult {
    #[serde(default)]
    interfaces: Vec<WireInterface>,
    #[serde(default)]
    ips: Vec<WireIp>,
    #[serde(default)]
    routes: Vec<WireRoute>,
    #[serde(default)]
    dns: Option<ConfDns>,
}

#[derive(Deserialize)]
struct WireInterface {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct WireIp {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<u32>,
}

#[derive(Deserialize)]
struct WireRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    advmss: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u32>,
}

/// DNS settings as results and IPAM configs write them.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ConfDns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl From<WireResult> for CniResult {
    fn from(w: WireResult) -> Self {
        CniResult {
            interfaces: w
                .interfaces
                .into_iter()
                .map(|i| Interface {
                    name: i.name,
                    mac: i.mac,
                    mtu: i.mtu,
                    sandbox: i.sandbox.is_some_and(|s| !s.is_empty()),
                })
                .collect(),
            ips: w
                .ips
                .into_iter()
                .map(|i| IpConfig {
                    address: i.address,
                    gateway: i.gateway,
                    interface: i.interface,
                })
                .collect(),
            routes: w
                .routes
                .into_iter()
                .map(|r| Route {
                    dst: r.dst,
                    gw: r.gw,
                    mtu: r.mtu,
                    advmss: r.advmss,
                    priority: r.priority,
                    table: r.table,
                    scope: r.scope,
                })
                .collect(),
            dns: w.dns.map(Dns::from),
        }
    }
}

/// A `{dst, gw}` route as configs write them.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfRoute {
    pub dst: String,
    #[serde(default)]
    pub gw: Option<String>,
}

impl From<&ConfRoute> for Route {
    fn from(r: &ConfRoute) -> Self {
        Route {
            dst: r.dst.clone(),
            gw: r.gw.clone(),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

impl From<ConfDns> for Dns {
    fn from(d: ConfDns) -> Self {
        Dns {
            nameservers: d.nameservers,
            domain: d.domain,
            search: d.search,
            options: d.options,
        }
    }
}

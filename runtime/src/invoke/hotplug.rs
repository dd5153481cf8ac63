//! One network attached to, checked on or detached from a running pod
//! (upstream's `/delegate`, what multus-dynamic-networks-controller calls):
//! `CNI_IFNAME` is the new interface, the config is the network's own. The
//! attachment is recorded in the pod's cache, so the pod's own DEL removes
//! it too and no IP outlives the pod.

use serde_json::{Map, Value};

use crate::cache::{self, CacheFile, CachedDelegate};
use crate::cni::{CniError, Code, Command};
use crate::config::NetworkConfig;
use crate::delegate::chain;
use crate::k8s::nad;
use crate::k8s::selection::{self, NetworkSelection};

use super::Invocation;

/// What the caller asks of the new interface (upstream's
/// `interfaceAttributes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    pub ips: Vec<String>,
    pub mac: Option<String>,
    pub cni_args: Option<Map<String, Value>>,
}

impl Attributes {
    /// As a selection element asking the same, for its args: validated as
    /// the pod annotation's are (they become `CNI_ARGS` and runtimeConfig,
    /// where `10.0.0.5;K8S_POD_NAME=other` would name another pod).
    fn selection(&self) -> Result<NetworkSelection, CniError> {
        let mut item = serde_json::json!({"name": "hotplug", "ips": self.ips});
        if let Some(mac) = &self.mac {
            item["mac"] = mac.clone().into();
        }
        if let Some(args) = &self.cni_args {
            item["cni-args"] = Value::Object(args.clone());
        }
        selection::element(item, "")
            .map_err(|m| CniError::new(Code::InvalidConfig, format!("interfaceAttributes: {m}")))
    }
}

impl Invocation<'_> {
    fn pod_cache(&self) -> Result<Option<CacheFile>, CniError> {
        // A Go multus cache is converted with the pod's own interface.
        Ok(
            cache::read(&self.conf.cni_dir, &self.env.container_id, "eth0")?
                .map(|l| l.file().clone()),
        )
    }

    /// A hot-plugged network is a NAD the controller relays for the pod:
    /// the admin's `nadPluginTypes` hold for it as for the annotation's.
    fn check_types(&self, net: &NetworkConfig) -> Result<(), CniError> {
        let ns = self.env.args.get("K8S_POD_NAMESPACE").unwrap_or_default();
        if self.conf.system_namespaces.iter().any(|s| s == ns) {
            return Ok(());
        }
        nad::check_types(net, &self.conf.wasm.bounds, ns, &net.name)
    }

    fn hotplug_entry<'f>(&self, file: &'f CacheFile) -> Option<&'f CachedDelegate> {
        file.delegates.iter().find(|d| d.ifname == self.env.ifname)
    }

    /// ADD of `net` as `CNI_IFNAME`. An interface of that name the cache
    /// already has (a retried request) is deleted first.
    pub fn hotplug_add(&self, net: &NetworkConfig, attrs: &Attributes) -> Result<Value, CniError> {
        self.check_types(net)?;
        let sel = attrs.selection()?;
        let mut file = self.pod_cache()?;
        if let Some(f) = &mut file {
            if self.hotplug_entry(f).is_some() {
                tracing::warn!(pod = %self.pod(), ifname = %self.env.ifname, "interface already recorded; deleting it before the new ADD");
                self.hotplug_del(net)?;
                *f = self.pod_cache()?.unwrap_or_else(|| f.clone());
            }
        }
        let net = nad::inject(net, sel.cni_args.as_ref(), None)?;
        let entry = CachedDelegate::new(
            &net,
            &self.env.ifname,
            false,
            &self.delegate_cni_args(Some(&sel)),
            &sel.capability_args(),
        );
        // Recorded before it runs: a crash mid-ADD leaves what the pod's
        // DEL needs to undo it.
        if let Some(f) = &mut file {
            f.delegates.push(entry.clone());
            cache::write(&self.conf.cni_dir, f)?;
        } else {
            tracing::warn!(pod = %self.pod(), "no cache for this container; the hot-plugged interface is not recorded for the pod's DEL");
        }
        let path = self.search_path();
        let target = self.target(&entry, &path, &self.env.netns);
        let added = self.run_logged(Command::Add, &entry, || {
            chain::add(self.runner, &net, &target)
        });
        let Some(f) = &mut file else { return added };
        let last = f.delegates.len() - 1;
        match added {
            Ok(result) => {
                f.delegates[last].result = Some(result.clone());
                cache::write(&self.conf.cni_dir, f)?;
                Ok(result)
            }
            Err(e) => {
                if let Err(undo) = chain::del(self.runner, &net, &target, None) {
                    tracing::warn!(error = %undo, "rollback of the hot-plug ADD");
                    return Err(e.context("rollback failed; kept in the cache for the pod's DEL"));
                }
                f.delegates.pop();
                cache::write(&self.conf.cni_dir, f)?;
                Err(e)
            }
        }
    }

    /// DEL of `CNI_IFNAME`: the cached attachment (its config and result),
    /// else `net` with no previous result. Errors are returned.
    pub fn hotplug_del(&self, net: &NetworkConfig) -> Result<(), CniError> {
        self.check_types(net)?;
        let path = self.search_path();
        let file = self.pod_cache()?;
        let recorded = file.as_ref().and_then(|f| self.hotplug_entry(f)).cloned();
        let (Some(mut file), Some(entry)) = (file, recorded) else {
            tracing::info!(pod = %self.pod(), ifname = %self.env.ifname, "interface not recorded; deleting with the given config");
            let entry = CachedDelegate::new(
                net,
                &self.env.ifname,
                false,
                &self.env.args.for_delegate(),
                &Map::new(),
            );
            let target = self.target(&entry, &path, &self.env.netns);
            return self.run_logged(Command::Del, &entry, || {
                chain::del(self.runner, net, &target, None)
            });
        };
        let cache_path = cache::path(&self.conf.cni_dir, &self.env.container_id);
        let cached = entry.network(&cache_path)?;
        let target = self.target(&entry, &path, &self.env.netns);
        self.run_logged(Command::Del, &entry, || {
            chain::del(self.runner, &cached, &target, entry.result.as_ref())
        })?;
        file.delegates.retain(|d| d.ifname != self.env.ifname);
        cache::write(&self.conf.cni_dir, &file)
    }

    /// CHECK of the recorded `CNI_IFNAME` against its ADD result.
    pub fn hotplug_check(&self) -> Result<(), CniError> {
        let file = self.pod_cache()?;
        let entry = file
            .as_ref()
            .and_then(|f| self.hotplug_entry(f))
            .filter(|d| d.result.is_some())
            .ok_or_else(|| {
                CniError::new(
                    Code::UnknownContainer,
                    format!(
                        "CHECK: container {} has no completed ADD for interface {}",
                        self.env.container_id, self.env.ifname
                    ),
                )
            })?;
        let cache_path = cache::path(&self.conf.cni_dir, &self.env.container_id);
        let net = entry.network(&cache_path)?;
        if !chain::checks(&net) {
            return Ok(());
        }
        let path = self.search_path();
        let target = self.target(entry, &path, &self.env.netns);
        let prev = entry.result.as_ref().expect("filtered on a result");
        self.run_logged(Command::Check, entry, || {
            chain::check(self.runner, &net, &target, prev)
        })
    }
}

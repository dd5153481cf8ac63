//! ADD, DEL, CHECK, STATUS and GC over all of a pod's attachments: one file
//! per command around the shared plan (which networks, which interfaces,
//! which arguments) built here.

mod add;
mod check;
mod del;
mod gc;
pub mod hotplug;
pub mod pod_writes;
mod status;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Map;

use crate::cache::{self, CacheFile, CachedDelegate};
use crate::cni::result::CniResult;
use crate::cni::{CniEnv, CniError, Code, Command};
use crate::config::kube::DEFAULT_NETWORK_ANNOTATION;
use crate::config::{resolve::resolve, ClusterNetwork, MultusConf, NetworkConfig};
use crate::delegate::chain::{ChainError, Target};
use crate::delegate::PluginRunner;
use crate::k8s::api::Connect;
use crate::k8s::devices::{self, Allocator};
use crate::k8s::selection::NetworkSelection;
use crate::k8s::{self, nad, Named, PodContext};
use crate::{default_route, naming};

/// The most plugins one pod's networks may chain in all, on ADD: a pod
/// selects at most 256 networks and a NAD chains at most 64, together
/// 16,384 plugin runs per ADD (and as many undone by its rollback, on
/// every retry of the sandbox); far above any real pod's. DEL runs what
/// the cache holds, unbounded.
const MAX_POD_PLUGINS: usize = 256;

/// One CNI invocation of multus.
pub struct Invocation<'a> {
    pub env: &'a CniEnv,
    pub conf: &'a MultusConf,
    pub runner: &'a dyn PluginRunner,
    /// Where the API client comes from (the conf's kubeconfig, or the
    /// daemon's shared, cached one).
    pub cluster: &'a dyn Connect,
    /// The daemon's: ADD leaves the pod's network-status and events here,
    /// to be written after the answer. `None` writes them before.
    pub after_result: Option<&'a pod_writes::AfterResult>,
}

/// An attachment ready to run: its network, interface and arguments.
struct Planned {
    net: NetworkConfig,
    cached: CachedDelegate,
    /// How network-status names it: the conf's name, or `<ns>/<nad>`.
    status_name: String,
    default_route: Option<Vec<IpAddr>>,
    /// The device plugin's device-info file to copy to the attachment's own.
    device_info_source: Option<PathBuf>,
}

/// Whether planning may ask the kubelet for device IDs (ADD) or must not
/// depend on it (teardown without a cache).
#[derive(Clone, Copy, PartialEq, Eq)]
enum DeviceIds {
    Allocate,
    Skip,
}

impl<'a> Invocation<'a> {
    /// `binDir` first, then `CNI_PATH`, as upstream.
    fn search_path(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.conf.bin_dir.clone()];
        for d in &self.env.path {
            if !dirs.contains(d) {
                dirs.push(d.clone());
            }
        }
        dirs
    }

    fn pod(&self) -> String {
        let a = &self.env.args;
        match (a.get("K8S_POD_NAMESPACE"), a.get("K8S_POD_NAME")) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            _ => format!("container {}", self.env.container_id),
        }
    }

    fn network_ref(
        &self,
        ctx: Option<&PodContext>,
        reference: &str,
        field: &str,
    ) -> Result<Named, CniError> {
        match ctx {
            Some(c) => c.network_by_reference(self.conf, reference, field),
            // No pod (STATUS, GC, DEL without the API): the conf dir first,
            // then a NAD when a kubeconfig is set.
            None => match resolve(reference, &self.conf.conf_dir, field) {
                Ok(net) => Ok(Named::file(net)),
                Err(e) => {
                    k8s::network_without_pod(self.cluster, self.conf, reference, field)?.ok_or(e)
                }
            },
        }
    }

    /// The pod's networks: the cluster network (or the pod's
    /// default-network override), `defaultNetworks` unless the pod lives in a
    /// system namespace, then every network its selection annotations name.
    fn networks(
        &self,
        ctx: Option<&PodContext>,
    ) -> Result<Vec<(Named, Option<NetworkSelection>)>, CniError> {
        let conf = self.conf;
        let mut named: Vec<(Named, Option<NetworkSelection>)> = Vec::new();
        let ns = self.env.args.get("K8S_POD_NAMESPACE");
        let system = ns.is_some_and(|ns| conf.system_namespaces.iter().any(|s| s == ns));
        // Everything the annotations select is read and checked first, so
        // every NAD the pod needs is fetched at once.
        let (override_sel, sels) = match ctx {
            Some(c) => {
                let sels = c.selections(conf)?;
                for sel in &sels {
                    c.check_isolation(conf, sel)?;
                }
                let over = c.default_network_override(conf)?;
                let cluster = match (&conf.cluster, &over) {
                    (_, Some(o)) => Some((o.namespace.clone(), o.name.clone())),
                    (ClusterNetwork::Reference(r), None) => c.reference_to_fetch(conf, r),
                    (ClusterNetwork::Delegates(_), None) => None,
                };
                let defaults = conf.default_networks.iter().filter(|_| !system);
                let keys: Vec<(String, String)> = cluster
                    .into_iter()
                    .chain(defaults.filter_map(|r| c.reference_to_fetch(conf, r)))
                    .chain(sels.iter().map(|s| (s.namespace.clone(), s.name.clone())))
                    .collect();
                c.prefetch(&keys);
                (over, sels)
            }
            None => (None, Vec::new()),
        };
        let overridden = match (ctx, &override_sel) {
            (Some(c), Some(o)) => {
                Some(c.nad(conf, &o.namespace, &o.name, DEFAULT_NETWORK_ANNOTATION)?)
            }
            _ => None,
        };
        match (&conf.cluster, overridden) {
            (ClusterNetwork::Delegates(d), over) => {
                let mut nets = d.iter().cloned().map(Named::file);
                let first = nets.next().expect("the conf parser requires one delegate");
                named.push((over.unwrap_or(first), None));
                named.extend(nets.map(|n| (n, None)));
            }
            (ClusterNetwork::Reference(_), Some(over)) => named.push((over, None)),
            (ClusterNetwork::Reference(r), None) => {
                named.push((self.network_ref(ctx, r, "clusterNetwork")?, None))
            }
        }
        if !system {
            for (i, r) in conf.default_networks.iter().enumerate() {
                named.push((
                    self.network_ref(ctx, r, &format!("defaultNetworks[{i}]"))?,
                    None,
                ));
            }
        }
        if let Some(c) = ctx {
            for sel in sels {
                let n = c.nad(conf, &sel.namespace, &sel.name, "network selection")?;
                named.push((n, Some(sel)));
            }
        }
        let plugins: usize = named.iter().map(|(n, _)| n.net.plugins.len()).sum();
        if self.env.command == Command::Add && plugins > MAX_POD_PLUGINS {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "pod {}: its {} networks chain {plugins} plugins, at most {MAX_POD_PLUGINS}",
                    self.pod(),
                    named.len()
                ),
            ));
        }
        default_route::validate(
            &named
                .iter()
                .map(|(n, s)| {
                    (
                        n.status_name.clone(),
                        s.as_ref().and_then(|s| s.default_route.clone()),
                    )
                })
                .collect::<Vec<_>>(),
        )
        .map_err(|e| e.context(format!("pod {}", self.pod())))?;
        Ok(named)
    }

    /// Every network of the pod ready to run: interface names, CNI_ARGS,
    /// capability args, device IDs and the config each delegate gets.
    fn plan(
        &self,
        ctx: Option<&PodContext>,
        device_ids: DeviceIds,
    ) -> Result<Vec<Planned>, CniError> {
        let conf = self.conf;
        let named = self.networks(ctx)?;
        // STATUS and GC carry no CNI_IFNAME; names do not matter to them.
        let master = if self.env.ifname.is_empty() {
            "eth0"
        } else {
            &self.env.ifname
        };
        let requests: Vec<Option<String>> = named
            .iter()
            .map(|(_, s)| s.as_ref().and_then(|s| s.interface.clone()))
            .collect();
        let ifnames = naming::assign(&requests, master)?;
        let mut allocator = match (ctx, device_ids) {
            (Some(c), DeviceIds::Allocate) if named.iter().any(|(n, _)| n.resource.is_some()) => {
                Some(Allocator::new(devices::query(
                    &conf.kube.pod_resources_socket,
                    &c.pod_ref.namespace,
                    &c.pod_ref.name,
                    conf.kube.request_timeout,
                )?))
            }
            _ => None,
        };
        let mut planned = Vec::with_capacity(named.len());
        for (i, ((n, sel), ifname)) in named.into_iter().zip(ifnames).enumerate() {
            // Runtime capability args belong to the cluster default network
            // only (multi-net spec §7.5); secondaries get their selection's.
            let mut caps = match (&sel, i) {
                (_, 0) => conf.runtime_config.clone(),
                (Some(s), _) => s.capability_args(),
                (None, _) => Map::new(),
            };
            let cni_args = self.delegate_cni_args(sel.as_ref());
            let mut device_info_source = None;
            let device = match (&n.resource, allocator.as_mut()) {
                (Some(res), Some(a)) => {
                    let id = a.take(res, &n.status_name)?;
                    let info = devices::info_file(
                        &conf.kube.device_info_dir,
                        &n.status_name,
                        &self.env.container_id,
                        &ifname,
                    );
                    caps.insert("deviceID".into(), id.clone().into());
                    caps.insert(
                        devices::INFO_FILE_KEY.into(),
                        info.display().to_string().into(),
                    );
                    device_info_source = Some(devices::plugin_info_file(
                        &conf.kube.device_info_dir,
                        res,
                        &id,
                    ));
                    Some(id)
                }
                _ => None,
            };
            let net = nad::inject(
                &n.net,
                sel.as_ref().and_then(|s| s.cni_args.as_ref()),
                device.as_deref(),
            )?;
            let cached = CachedDelegate::new(&net, &ifname, i == 0, &cni_args, &caps);
            planned.push(Planned {
                net,
                cached,
                status_name: n.status_name,
                default_route: sel.and_then(|s| s.default_route),
                device_info_source,
            });
        }
        Ok(planned)
    }

    /// A delegate's `CNI_ARGS`: the runtime's, plus the selection's IP and
    /// MAC in the legacy form.
    fn delegate_cni_args(&self, sel: Option<&NetworkSelection>) -> String {
        let mut cni_args = self.env.args.for_delegate();
        for (k, v) in sel.iter().flat_map(|s| s.legacy_cni_args()) {
            cni_args.push_str(&format!(";{k}={v}"));
        }
        cni_args
    }

    fn target<'b>(
        &'b self,
        d: &'b CachedDelegate,
        path: &'b [PathBuf],
        netns: &'b str,
    ) -> Target<'b> {
        Target {
            container_id: &self.env.container_id,
            netns,
            ifname: &d.ifname,
            cni_args: &d.cni_args,
            capability_args: &d.capability_args,
            path,
        }
    }

    fn run_logged<T>(
        &self,
        command: Command,
        d: &CachedDelegate,
        f: impl FnOnce() -> Result<T, ChainError>,
    ) -> Result<T, CniError> {
        let started = Instant::now();
        let out = f();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &out {
            Ok(_) => {
                tracing::info!(pod = %self.pod(), network = %d.network_name, ifname = %d.ifname, command = %command, duration_ms = format!("{ms:.2}"), "delegate ok")
            }
            Err(e) => {
                tracing::error!(pod = %self.pod(), network = %d.network_name, ifname = %d.ifname, command = %command, duration_ms = format!("{ms:.2}"), error = %e, "delegate failed")
            }
        }
        out.map_err(|e| e.into_cni().context(format!("interface {}", d.ifname)))
    }

    fn new_cache(&self, delegates: Vec<CachedDelegate>) -> CacheFile {
        CacheFile {
            kind: cache::KIND.into(),
            container_id: self.env.container_id.clone(),
            netns: self.env.netns.clone(),
            ifname: self.env.ifname.clone(),
            cni_version: self.conf.cni_version.clone(),
            complete: false,
            delegates,
        }
    }
}

fn parse_result(p: &Planned, d: &CachedDelegate) -> Result<CniResult, CniError> {
    let raw = d.result.as_ref().expect("every delegate has a result");
    CniResult::parse(raw, &p.net.cni_version)
        .map_err(|e| e.context(format!("the result of network {:?}", p.status_name)))
}

/// Several failures as one CNI error: the first one's code, every message.
fn combine(mut errors: Vec<CniError>) -> CniError {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let code = errors[0].code;
    let msg = errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    CniError {
        code,
        msg: format!("{} failures: {msg}", errors.len()),
        details: String::new(),
    }
}

//! ADD, DEL, CHECK, STATUS and GC over all of a pod's attachments.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};

use crate::cache::{self, CacheFile, CachedDelegate, Loaded};
use crate::cni::result::{self, CniResult};
use crate::cni::{CniEnv, CniError, Code, Command};
use crate::config::{resolve::resolve, Attachment, ClusterNetwork, MultusConf, NetworkConfig};
use crate::delegate::chain::{self, ChainError, Target};
use crate::delegate::PluginRunner;
use crate::k8s::devices::{self, Allocator};
use crate::k8s::selection::NetworkSelection;
use crate::k8s::{self, events, nad, status, Named, PodContext};
use crate::{default_route, naming, readiness};

/// One CNI invocation of multus.
pub struct Invocation<'a> {
    pub env: &'a CniEnv,
    pub conf: &'a MultusConf,
    pub runner: &'a dyn PluginRunner,
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
                Err(e) => k8s::network_without_pod(self.conf, reference, field)?.ok_or(e),
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
        let overridden = match ctx {
            Some(c) => c.default_network_override(conf)?,
            None => None,
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
        let ns = self.env.args.get("K8S_POD_NAMESPACE");
        if !ns.is_some_and(|ns| conf.system_namespaces.iter().any(|s| s == ns)) {
            for (i, r) in conf.default_networks.iter().enumerate() {
                named.push((
                    self.network_ref(ctx, r, &format!("defaultNetworks[{i}]"))?,
                    None,
                ));
            }
        }
        if let Some(c) = ctx {
            for sel in c.selections(conf)? {
                c.check_isolation(conf, &sel)?;
                let n = c.nad(conf, &sel.namespace, &sel.name, "network selection")?;
                named.push((n, Some(sel)));
            }
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
        let base_args = self.env.args.for_delegate();
        let mut planned = Vec::with_capacity(named.len());
        for (i, ((n, sel), ifname)) in named.into_iter().zip(ifnames).enumerate() {
            // Runtime capability args belong to the cluster default network
            // only (multi-net spec §7.5); secondaries get their selection's.
            let mut caps = match (&sel, i) {
                (_, 0) => conf.runtime_config.clone(),
                (Some(s), _) => s.capability_args(),
                (None, _) => Map::new(),
            };
            let mut cni_args = base_args.clone();
            for (k, v) in sel.iter().flat_map(|s| s.legacy_cni_args()) {
                cni_args.push_str(&format!(";{k}={v}"));
            }
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

    /// ADD every attachment in order; on any failure, DEL what was added (in
    /// reverse, the failing one included) and leave no cache behind.
    pub fn add(&self) -> Result<Value, CniError> {
        if let Some(f) = &self.conf.readiness_indicator_file {
            readiness::wait(f, readiness::WAIT)?;
        }
        let cni_dir = &self.conf.cni_dir;
        if let Some(stale) = cache::read(cni_dir, &self.env.container_id, &self.env.ifname)? {
            // A previous ADD died half-way (the runtime must DEL before a new
            // ADD): undo what it recorded instead of leaking it.
            tracing::warn!(pod = %self.pod(), "found the cache of an earlier ADD; deleting its attachments first");
            self.del_cached(stale)?;
        }
        // The pod and its networks are resolved before anything is created:
        // an API or annotation problem leaves no state behind.
        let ctx = PodContext::connect(self.conf, self.env)?;
        let planned = self.plan(ctx.as_ref(), DeviceIds::Allocate)?;
        let mut file = self.new_cache(planned.iter().map(|p| p.cached.clone()).collect());
        cache::write(cni_dir, &file)?;
        let path = self.search_path();
        for (i, p) in planned.iter().enumerate() {
            let target = self.target(&p.cached, &path, &self.env.netns);
            let outcome =
                devices::seed_info_file(p.device_info_source.as_deref(), &p.cached.capability_args)
                    .and_then(|()| {
                        self.run_logged(Command::Add, &p.cached, || {
                            chain::add(self.runner, &p.net, &target)
                        })
                    });
            match outcome {
                Ok(r) => file.delegates[i].result = Some(r),
                Err(e) => return Err(self.rollback(&planned, &file, i, e)),
            }
        }
        let last = planned.len() - 1;
        if let Err(e) = self.move_default_route(&planned, &mut file) {
            return Err(self.rollback(&planned, &file, last, e));
        }
        file.complete = true;
        if let Err(e) = cache::write(cni_dir, &file) {
            return Err(self.rollback(&planned, &file, last, e));
        }
        if let Some(c) = &ctx {
            if let Err(e) = self.write_network_status(c, &planned, &file) {
                if self.conf.kube.network_status_required {
                    return Err(self.rollback(&planned, &file, last, e));
                }
                tracing::warn!(pod = %self.pod(), error = %e, "network-status not written (networkStatusRequired is false)");
            }
            self.record_added(c, &planned, &file);
        }
        let master = &planned[0];
        let raw = file.delegates[0]
            .result
            .as_ref()
            .expect("every delegate has a result");
        result::convert(raw, &master.net.cni_version, &self.conf.cni_version).map_err(|e| {
            e.context(format!(
                "converting the result of network {:?}",
                master.net.name
            ))
        })
    }

    /// Applies a selection's `default-route` in the pod and in the cached
    /// results (which DEL and network-status read).
    fn move_default_route(
        &self,
        planned: &[Planned],
        file: &mut CacheFile,
    ) -> Result<(), CniError> {
        if planned.iter().all(|p| p.default_route.is_none()) {
            return Ok(());
        }
        let mut results = planned
            .iter()
            .zip(&file.delegates)
            .map(|(p, d)| parse_result(p, d))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = std::time::Duration::from_secs(5);
        let pod = multus_host_functions::netns::PodNetns::open(Path::new(&self.env.netns), timeout)
            .map_err(|e| {
                CniError::new(
                    Code::Internal,
                    format!("default-route: pod netns {}: {e}", self.env.netns),
                )
            })?;
        let mut kernel = multus_host_functions::netlink::Kernel {
            pod: Some(pod),
            host: None,
            timeout,
        };
        let mut attachments: Vec<default_route::Attachment> = planned
            .iter()
            .zip(results.iter_mut())
            .map(|(p, r)| default_route::Attachment {
                ifname: &p.cached.ifname,
                request: p.default_route.as_deref(),
                result: r,
            })
            .collect();
        default_route::apply(&mut kernel, &mut attachments)?;
        for ((p, d), r) in planned.iter().zip(file.delegates.iter_mut()).zip(results) {
            d.result = Some(r.to_value(&p.net.cni_version));
        }
        Ok(())
    }

    /// One network-status entry per sandbox interface of every attachment,
    /// written to the pod, except for pods in `systemNamespaces`.
    fn write_network_status(
        &self,
        ctx: &PodContext,
        planned: &[Planned],
        file: &CacheFile,
    ) -> Result<(), CniError> {
        if self.conf.system_namespaces.contains(&ctx.pod_ref.namespace) {
            return Ok(());
        }
        let mut entries = Vec::new();
        for (i, (p, d)) in planned.iter().zip(&file.delegates).enumerate() {
            let r = parse_result(p, d)?;
            let info = devices::read_info_file(&d.capability_args);
            entries.extend(status::entries(&r, &p.status_name, &d.ifname, i == 0, info));
        }
        let key = &self.conf.kube.network_status_annotation;
        if !status::write(
            &ctx.kube,
            &ctx.pod_ref,
            &ctx.pod,
            key,
            &status::render(&entries),
        )? {
            tracing::warn!(pod = %self.pod(), "the pod was deleted during ADD; network-status not written");
        }
        Ok(())
    }

    /// One `AddedInterface` event per attachment that reported interfaces
    /// or addresses, once the whole ADD has succeeded.
    fn record_added(&self, ctx: &PodContext, planned: &[Planned], file: &CacheFile) {
        for (p, d) in planned.iter().zip(&file.delegates) {
            let Ok(r) = parse_result(p, d) else { continue };
            if r.interfaces.is_empty() && r.ips.is_empty() {
                continue;
            }
            let ips: Vec<String> = r.ips.iter().map(|ip| ip.address.to_string()).collect();
            events::record(
                &ctx.kube,
                &ctx.pod_ref,
                &ctx.pod,
                events::Kind::Normal,
                "AddedInterface",
                &events::added_interface(&d.ifname, &ips, &p.status_name),
            );
        }
    }

    fn rollback(
        &self,
        planned: &[Planned],
        file: &CacheFile,
        failed: usize,
        err: CniError,
    ) -> CniError {
        let path = self.search_path();
        let mut leftovers = Vec::new();
        for i in (0..=failed).rev() {
            let (p, d) = (&planned[i], &file.delegates[i]);
            let target = self.target(d, &path, &self.env.netns);
            let del = self.run_logged(Command::Del, d, || {
                chain::del(self.runner, &p.net, &target, d.result.as_ref())
            });
            // The failed delegate's DEL only sweeps up after it (its plugin
            // may not even exist); delegates that succeeded hold resources,
            // and if they cannot be deleted the cache stays for the runtime.
            match del {
                Err(e) if d.result.is_some() => leftovers.push(e.msg),
                _ => devices::remove_info_file(&d.capability_args),
            }
        }
        if leftovers.is_empty() {
            if let Err(e) = cache::remove(&self.conf.cni_dir, &self.env.container_id) {
                leftovers.push(e.msg);
            }
        }
        let err = err.context(format!("[{}]", self.pod()));
        if leftovers.is_empty() {
            err
        } else {
            // The cache stays so the runtime's DEL can retry the cleanup.
            err.with_details(format!("rollback incomplete: {}", leftovers.join("; ")))
        }
    }

    /// DEL from the cache (or, without one, from the conf), every attachment
    /// in reverse, past failures; the cache goes only when all succeeded.
    pub fn del(&self) -> Result<(), CniError> {
        if let Some(f) = &self.conf.readiness_indicator_file {
            if !f.exists() {
                tracing::warn!(file = %f.display(), "readinessindicatorfile is missing; deleting anyway");
            }
        }
        match cache::read(&self.conf.cni_dir, &self.env.container_id, &self.env.ifname)? {
            Some(loaded) => self.del_cached(loaded),
            None => match self.plan_teardown() {
                Ok(planned) => {
                    let file = self.new_cache(planned.into_iter().map(|p| p.cached).collect());
                    self.del_cached(Loaded::Current(file))
                }
                // ADD writes the cache before its first delegate runs, so no
                // cache means none of ours ran: failing here would only keep
                // the runtime from deleting the pod.
                Err(e) => {
                    tracing::warn!(pod = %self.pod(), error = %e, "no cache and the networks cannot be resolved; nothing to delete");
                    Ok(())
                }
            },
        }
    }

    /// The attachments to DEL when ADD left no cache: from the API when it
    /// answers at once (the pod's annotation networks too), else from the
    /// conf alone. Teardown never waits on the API server.
    fn plan_teardown(&self) -> Result<Vec<Planned>, CniError> {
        let ctx = match PodContext::connect_for_teardown(self.conf, self.env) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = %self.pod(), error = %e, "API server unavailable; deleting the networks of the conf only");
                None
            }
        };
        tracing::info!(pod = %self.pod(), from_api = ctx.is_some(), "no cache; planning the DEL");
        self.plan(ctx.as_ref(), DeviceIds::Skip)
    }

    fn del_cached(&self, loaded: Loaded) -> Result<(), CniError> {
        let cache_path = cache::path(&self.conf.cni_dir, &self.env.container_id);
        let path = self.search_path();
        let mut errors = Vec::new();
        for d in loaded.file().delegates.iter().rev() {
            let outcome = d.network(&cache_path).and_then(|net| {
                let target = self.target(d, &path, &self.env.netns);
                self.run_logged(Command::Del, d, || {
                    chain::del(self.runner, &net, &target, d.result.as_ref())
                })
            });
            match outcome {
                Ok(()) => devices::remove_info_file(&d.capability_args),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            cache::remove(&self.conf.cni_dir, &self.env.container_id)?;
            if let Loaded::Legacy(_, files) = &loaded {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
            }
            return Ok(());
        }
        Err(combine(errors).context(format!("[{}]: DEL", self.pod())))
    }

    /// CHECK every attachment the cache lists, in order.
    pub fn check(&self) -> Result<(), CniError> {
        let cache_path = cache::path(&self.conf.cni_dir, &self.env.container_id);
        let loaded = cache::read(&self.conf.cni_dir, &self.env.container_id, &self.env.ifname)?;
        let file = match loaded {
            Some(l) if l.file().complete => l,
            _ => {
                return Err(CniError::new(
                    Code::UnknownContainer,
                    format!(
                        "CHECK: container {} has no completed ADD (no cache at {})",
                        self.env.container_id,
                        cache_path.display()
                    ),
                ))
            }
        };
        let path = self.search_path();
        for d in &file.file().delegates {
            let net = d.network(&cache_path)?;
            if !chain::checks(&net) {
                tracing::debug!(network = %net.name, version = %net.cni_version, "CHECK skipped: before 0.4.0 or disableCheck");
                continue;
            }
            let prev = d.result.as_ref().ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!(
                        "CHECK: cache {} has no result for network {:?}",
                        cache_path.display(),
                        d.network_name
                    ),
                )
            })?;
            let target = self.target(d, &path, &self.env.netns);
            self.run_logged(Command::Check, d, || {
                chain::check(self.runner, &net, &target, prev)
            })?;
        }
        Ok(())
    }

    /// STATUS of every network of the conf; the worst answer wins.
    pub fn status(&self) -> Result<(), CniError> {
        if let Some(f) = &self.conf.readiness_indicator_file {
            if !f.exists() {
                return Err(CniError::new(
                    Code::NotAvailable,
                    format!(
                        "readinessindicatorfile {} is missing: the cluster network is not ready",
                        f.display()
                    ),
                ));
            }
        }
        let path = self.search_path();
        let mut errors = Vec::new();
        for p in self.plan(None, DeviceIds::Skip)? {
            if !chain::has_status_and_gc(&p.net) {
                continue;
            }
            let target = self.target(&p.cached, &path, "");
            if let Err(e) = self.run_logged(Command::Status, &p.cached, || {
                chain::status(self.runner, &p.net, &target)
            }) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(|e| std::cmp::Reverse(status_severity(e.code)));
        Err(combine(errors))
    }

    /// GC: DEL the cached attachments the runtime no longer lists, then send
    /// every network the attachments that stay valid.
    pub fn gc(&self) -> Result<(), CniError> {
        let valid = self.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                "GC: the conf has no \"cni.dev/valid-attachments\" list",
            )
        })?;
        let cni_dir = &self.conf.cni_dir;
        let path = self.search_path();
        let mut errors = Vec::new();
        let mut kept: Vec<CacheFile> = Vec::new();
        for id in cache::list(cni_dir)? {
            let loaded = match cache::read(cni_dir, &id, "eth0") {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let f = loaded.file();
            if valid
                .iter()
                .any(|a| a.container_id == f.container_id && a.ifname == f.ifname)
            {
                kept.push(f.clone());
                continue;
            }
            tracing::info!(container = %id, "GC: deleting attachments no longer valid");
            let env = CniEnv {
                container_id: id.clone(),
                netns: f.netns.clone(),
                ifname: f.ifname.clone(),
                ..self.env.clone()
            };
            let stale = Invocation { env: &env, ..*self };
            if let Err(e) = stale.del_cached(loaded) {
                errors.push(e);
            }
        }
        let mut nets: Vec<NetworkConfig> = self
            .plan(None, DeviceIds::Skip)?
            .into_iter()
            .map(|p| p.net)
            .collect();
        for f in &kept {
            for d in &f.delegates {
                if let Ok(net) = d.network(&cache::path(cni_dir, &f.container_id)) {
                    if !nets
                        .iter()
                        .any(|n| n.name == net.name && n.bytes == net.bytes)
                    {
                        nets.push(net);
                    }
                }
            }
        }
        let none = Map::new();
        for net in nets.iter().filter(|n| chain::has_status_and_gc(n)) {
            let still: Vec<Attachment> = kept
                .iter()
                .flat_map(|f| {
                    f.delegates
                        .iter()
                        .filter(|d| d.network_name == net.name)
                        .map(|d| Attachment {
                            container_id: f.container_id.clone(),
                            ifname: d.ifname.clone(),
                        })
                })
                .collect();
            let target = Target {
                container_id: "",
                netns: "",
                ifname: "",
                cni_args: "",
                capability_args: &none,
                path: &path,
            };
            errors.extend(
                chain::gc(self.runner, net, &target, &still)
                    .into_iter()
                    .map(ChainError::into_cni),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(combine(errors).context("GC"))
        }
    }
}

fn parse_result(p: &Planned, d: &CachedDelegate) -> Result<CniResult, CniError> {
    let raw = d.result.as_ref().expect("every delegate has a result");
    CniResult::parse(raw, &p.net.cni_version)
        .map_err(|e| e.context(format!("the result of network {:?}", p.status_name)))
}

/// STATUS's order of badness: 51 (existing pods affected) over 50 over the rest.
fn status_severity(code: u32) -> u8 {
    match code {
        51 => 2,
        50 => 1,
        _ => 0,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delegate::recording::Recording;

    struct Setup {
        _dir: tempfile::TempDir,
        conf: MultusConf,
        env: CniEnv,
    }

    fn setup(delegates: &[&str], command: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"multus","cniDir":"{}","delegates":[{}]}}"#,
            dir.path().join("cache").display(),
            delegates.join(",")
        );
        let conf = MultusConf::parse(conf.as_bytes()).unwrap();
        let vars = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "cid"),
            ("CNI_NETNS", "/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod"),
        ];
        let env = CniEnv::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        Setup {
            _dir: dir,
            conf,
            env,
        }
    }

    const A: &str = r#"{"cniVersion":"0.4.0","name":"a","type":"pa"}"#;
    const B: &str = r#"{"cniVersion":"1.0.0","name":"b","type":"pb"}"#;
    const C: &str = r#"{"cniVersion":"1.0.0","name":"c","type":"pc"}"#;

    #[test]
    fn add_converts_master_result_and_caches_everything() {
        let s = setup(&[A, B], "ADD");
        let r = Recording::default();
        r.respond(
            "pa",
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}"#,
        );
        let inv = Invocation {
            env: &s.env,
            conf: &s.conf,
            runner: &r,
        };
        let out = inv.add().unwrap();
        assert_eq!(out["cniVersion"], "1.0.0");
        assert!(out["ips"][0].get("version").is_none());
        let calls = r.calls();
        assert_eq!(
            calls.iter().map(|c| c.ifname.as_str()).collect::<Vec<_>>(),
            vec!["eth0", "net1"]
        );
        let f = cache::read(&s.conf.cni_dir, "cid", "eth0")
            .unwrap()
            .unwrap();
        let f = f.file();
        assert!(f.complete);
        assert_eq!(f.delegates.len(), 2);
        assert_eq!(
            f.delegates[0].result.as_ref().unwrap()["ips"][0]["address"],
            "10.0.0.2/24"
        );
        assert_eq!(
            f.delegates[1].cni_args,
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod"
        );
    }

    #[test]
    fn failed_add_rolls_back_in_reverse_and_removes_cache() {
        let s = setup(&[A, B, C], "ADD");
        let r = Recording::default();
        r.fail_on("pc", Command::Add, 7, "boom");
        let inv = Invocation {
            env: &s.env,
            conf: &s.conf,
            runner: &r,
        };
        let e = inv.add().unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.contains("ns/pod") && e.msg.contains("net2") && e.msg.contains("boom"),
            "{}",
            e.msg
        );
        let seq = r.sequence();
        assert_eq!(
            seq,
            vec!["ADD pa", "ADD pb", "ADD pc", "DEL pc", "DEL pb", "DEL pa"]
        );
        assert!(cache::read(&s.conf.cni_dir, "cid", "eth0")
            .unwrap()
            .is_none());
    }

    #[test]
    fn del_uses_cache_keeps_going_and_reports_all() {
        let s = setup(&[A, B, C], "ADD");
        let r = Recording::default();
        Invocation {
            env: &s.env,
            conf: &s.conf,
            runner: &r,
        }
        .add()
        .unwrap();
        // DEL must use the cached list even when the conf changed.
        let changed = setup(&[A], "DEL");
        let conf = MultusConf {
            cni_dir: s.conf.cni_dir.clone(),
            ..changed.conf
        };
        let r = Recording::default();
        r.fail("pb", 11, "b down");
        r.fail("pa", 999, "a down");
        let e = Invocation {
            env: &changed.env,
            conf: &conf,
            runner: &r,
        }
        .del()
        .unwrap_err();
        let seq: Vec<_> = r.calls().iter().map(|c| c.plugin_type.clone()).collect();
        assert_eq!(seq, vec!["pc", "pb", "pa"]);
        assert!(
            e.msg.contains("b down") && e.msg.contains("a down"),
            "{}",
            e.msg
        );
        assert_eq!(e.code, 11);
        assert!(
            cache::read(&conf.cni_dir, "cid", "eth0").unwrap().is_some(),
            "cache kept for retry"
        );
        let r = Recording::default();
        let inv = Invocation {
            env: &changed.env,
            conf: &conf,
            runner: &r,
        };
        inv.del().unwrap();
        assert!(cache::read(&conf.cni_dir, "cid", "eth0").unwrap().is_none());
        // Second DEL: no cache, falls back to the conf, still succeeds.
        inv.del().unwrap();
        assert_eq!(r.calls().last().unwrap().plugin_type, "pa");
    }

    #[test]
    fn add_over_an_interrupted_add_deletes_it_first() {
        let s = setup(&[A, B], "ADD");
        let r = Recording::default();
        let inv = Invocation {
            env: &s.env,
            conf: &s.conf,
            runner: &r,
        };
        inv.add().unwrap();
        inv.add().unwrap();
        let seq = r.sequence();
        assert_eq!(
            seq,
            vec!["ADD pa", "ADD pb", "DEL pb", "DEL pa", "ADD pa", "ADD pb"]
        );
    }

    #[test]
    fn check_needs_cache_and_skips_old_versions() {
        let s = setup(
            &[r#"{"cniVersion":"0.3.1","name":"old","type":"po"}"#, B],
            "CHECK",
        );
        let r = Recording::default();
        let inv = Invocation {
            env: &s.env,
            conf: &s.conf,
            runner: &r,
        };
        assert_eq!(inv.check().unwrap_err().code, 3);
        inv.add().unwrap();
        let r2 = Recording::default();
        Invocation {
            env: &s.env,
            conf: &s.conf,
            runner: &r2,
        }
        .check()
        .unwrap();
        let seq = r2.sequence();
        assert_eq!(seq, vec!["CHECK pb"]);
    }

    #[test]
    fn status_reports_worst() {
        let s = setup(
            &[
                r#"{"cniVersion":"1.1.0","name":"a","type":"pa"}"#,
                r#"{"cniVersion":"1.1.0","name":"b","type":"pb"}"#,
            ],
            "STATUS",
        );
        let r = Recording::default();
        r.fail("pa", 50, "a not ready");
        r.fail("pb", 51, "b degraded");
        let e = Invocation {
            env: &s.env,
            conf: &s.conf,
            runner: &r,
        }
        .status()
        .unwrap_err();
        assert_eq!(e.code, 51);
        assert!(e.msg.contains("a not ready"));
    }
}

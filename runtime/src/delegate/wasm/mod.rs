//! Wasm delegates: a plugin whose `<type>.wasm` is in `wasmPluginDir` runs
//! in-process in wasmtime, sandboxed by a per-call grant, instead of being
//! exec'd.

pub mod artifact;
pub mod audit;
pub mod cluster;
pub mod convert;
pub mod engine;
mod flights;
pub mod grant;
pub mod ipam;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use multus_host_functions::bindings::exports::multus::plugin::plugin as wit_plugin;
use multus_host_functions::bindings::mapper::exports::multus::plugin::mapper as wit_mapper;
use multus_host_functions::bindings::mapper::AnnotationMapperPre;
use multus_host_functions::bindings::multus::plugin::types as wit;
use multus_host_functions::bindings::{PluginHost, PluginHostPre};
use multus_host_functions::cluster::{ClusterBackend, RecordingCluster};
use multus_host_functions::grant::Grant;
use multus_host_functions::netlink::Kernel;
use multus_host_functions::netns::PodNetns;
use multus_host_functions::state::{HostState, KernelBackend, RecordingKernel};
use multus_host_functions::store::{FsStore, RecordingStore, StoreBackend};
use multus_host_functions::turns::Turns;
use serde_json::Value;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

use super::{PluginCall, PluginError};
use crate::boundary::plugin_type::ipam_type;
use crate::boundary::{self, PluginType};
use crate::cni::{CniError, Code, Command};
use crate::config::{PluginSettings, WasmConf};
pub use audit::Role;

/// Where the time of one wasm call went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub engine: Duration,
    pub load: Duration,
    pub compiled: bool,
    pub instantiate: Duration,
    pub call: Duration,
}

impl Timings {
    /// One debug line per call, with each phase as its own field (what
    /// the daemon's metrics read).
    fn log(&self, module: &str, what: &str) {
        let us = |d: Duration| d.as_micros() as u64;
        tracing::debug!(
            module,
            load_us = us(self.load),
            instantiate_us = us(self.instantiate),
            call_us = us(self.call),
            compiled = self.compiled,
            "{what}"
        );
    }
}

const PIPE_CAPACITY: usize = 64 * 1024;

fn cni(code: Code, plugin: &str, msg: impl std::fmt::Display) -> PluginError {
    PluginError::Cni(CniError::new(
        code,
        format!("wasm plugin {plugin:?}: {msg}"),
    ))
}

/// A component linked for its world, ready to instantiate.
#[derive(Clone)]
enum Pre {
    Plugin(PluginHostPre<HostState>),
    Mapper(AnnotationMapperPre<HostState>),
}

/// Components audited and linked once per process, per module file and
/// role, and again only when the file's content changes: a warm call pays
/// neither the import audit nor the linking.
struct Linked {
    sha256: String,
    /// The linked component, or why it may not run (audit or link error).
    pre: Result<Pre, String>,
}

fn link(
    engine: &wasmtime::Engine,
    module: &Path,
    role: Role,
    loaded: &artifact::Loaded,
) -> Result<Pre, String> {
    static LINKED: OnceLock<Mutex<HashMap<(PathBuf, Role), Linked>>> = OnceLock::new();
    let mut linked = LINKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (module.to_path_buf(), role);
    if let Some(l) = linked.get(&key).filter(|l| l.sha256 == loaded.sha256) {
        return l.pre.clone();
    }
    let pre = link_cold(engine, role, loaded);
    linked.insert(
        key,
        Linked {
            sha256: loaded.sha256.clone(),
            pre: pre.clone(),
        },
    );
    pre
}

fn link_cold(
    engine: &wasmtime::Engine,
    role: Role,
    loaded: &artifact::Loaded,
) -> Result<Pre, String> {
    let refused = audit::refused(engine, &loaded.component, role);
    if !refused.is_empty() {
        return Err(format!(
            "module {} imports {} which {} plugin may not use (this host serves {} and WASI cli, io, random, clocks); refusing to run it",
            loaded.sha256,
            multus_host_functions::text::clip(refused.join(", "), MAX_GUEST_TEXT),
            role.article_name(),
            multus_host_functions::WIT_PACKAGE
        ));
    }
    let pre = linker(engine)?
        .instantiate_pre(&loaded.component)
        .map_err(|e| instantiate_failed(&e))?;
    Ok(match role {
        Role::Mapper => {
            Pre::Mapper(AnnotationMapperPre::new(pre).map_err(|e| instantiate_failed(&e))?)
        }
        _ => Pre::Plugin(PluginHostPre::new(pre).map_err(|e| instantiate_failed(&e))?),
    })
}

/// Loads (compiling what has no artifact yet) and links, for every role,
/// each module of `conf.plugin_dir`: what a long-lived process (the
/// daemon) does at start, so its first pod pays none of it. A module that
/// fails is left for its first call to report. Returns the modules warmed.
pub fn warm_up(conf: &WasmConf) -> usize {
    let Ok(engine) = engine::engine() else {
        return 0;
    };
    let Ok(dir) = std::fs::read_dir(&conf.plugin_dir) else {
        return 0;
    };
    let mut warmed = 0;
    for entry in dir.flatten() {
        let module = entry.path();
        let Some(ty) = module
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wasm"))
            .and_then(|n| PluginType::parse(n, "module file").ok())
        else {
            continue;
        };
        let Ok(pin) = conf.settings(&ty).map(|s| s.sha256) else {
            continue;
        };
        let Ok(loaded) = artifact::load(engine, &ty, &module, &conf.cache_dir, pin.as_deref())
        else {
            continue;
        };
        for role in [Role::Ipam, Role::Chained, Role::Mapper] {
            let _ = link(engine, &module, role, &loaded);
        }
        warmed += 1;
    }
    warmed
}

/// A store ready for one call: the linked component, its host state (grant,
/// limits, deadline) and the captured stdout/stderr.
struct Sandbox {
    store: Store<HostState>,
    pre: Pre,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    settings: PluginSettings,
    /// The call's budget (`timeoutMs`, by default longer with cluster
    /// access).
    timeout: Duration,
    /// The deadline's clock runs while the store lives.
    _ticking: engine::Ticking,
}

/// What a component may reach during one call.
struct Reach {
    grant: Grant,
    store: Option<Box<dyn StoreBackend>>,
    kernel: Box<dyn KernelBackend>,
    cluster: Option<Box<dyn ClusterBackend>>,
    ipam: Option<Box<dyn multus_host_functions::links::IpamBackend>>,
    turns: Option<Turns>,
    container_id: String,
}

impl Sandbox {
    /// Loads (or compiles once) `module`, audits its imports against `role`
    /// and builds the store for `reach`.
    fn new(
        conf: &WasmConf,
        (role, ty, settings): (Role, &PluginType, PluginSettings),
        module: &Path,
        reach: Reach,
        t: &mut Timings,
    ) -> Result<Self, PluginError> {
        let started = Instant::now();
        let engine =
            engine::engine().map_err(|e| cni(Code::Internal, ty, format!("engine: {e}")))?;
        t.engine = started.elapsed();
        let loaded = artifact::load(
            engine,
            ty,
            module,
            &conf.cache_dir,
            settings.sha256.as_deref(),
        )
        .map_err(PluginError::Cni)?;
        t.load = loaded.load_time;
        t.compiled = loaded.compiled;
        let started = Instant::now();
        let pre =
            link(engine, module, role, &loaded).map_err(|e| cni(Code::InvalidConfig, ty, e))?;
        t.instantiate = started.elapsed();
        let (stdout, stderr) = (
            MemoryOutputPipe::new(PIPE_CAPACITY),
            MemoryOutputPipe::new(PIPE_CAPACITY),
        );
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            // What one `get-random-bytes` may ask the host to allocate
            // (wasmtime-wasi's own bound is 64 MiB, whatever the cap).
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let memory = settings.memory_limit_mib as usize * 1024 * 1024;
        let timeout = settings.timeout(reach.grant.cluster.is_some());
        let mut state = HostState::new(
            reach.grant,
            wasi,
            memory,
            reach.store,
            reach.kernel,
            &reach.container_id,
        );
        state.cluster = reach.cluster;
        state.turns = reach.turns;
        state.ipam = reach.ipam;
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        // What the host copies out of the guest in one lift (a host call's
        // arguments, an export's result) is bounded by this fuel, not by the
        // guest's memory: a list's elements may all point at one string, so
        // wasmtime's default (128 MiB, whatever the limit) would let a module
        // with 8 MiB make the host allocate 128. Bounded by what the admin set.
        store.set_hostcall_fuel(memory);
        let _ticking = engine::Ticking::start();
        store.set_epoch_deadline(engine::ticks(timeout));
        store.epoch_deadline_trap();
        Ok(Self {
            store,
            pre,
            stdout,
            stderr,
            settings,
            timeout,
            _ticking,
        })
    }

    /// Logs what the guest printed and turns any sandbox denial into the
    /// call's error, even one the guest ignored.
    fn finish(&self, ty: &str) -> Result<(), PluginError> {
        for (pipe, what) in [(&self.stdout, "stdout"), (&self.stderr, "stderr")] {
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                tracing::debug!(
                    plugin = ty,
                    "{what}: {}",
                    String::from_utf8_lossy(&bytes).trim_end()
                );
            }
        }
        let state = self.store.data();
        if state.log.dropped() > 0 {
            tracing::warn!(
                plugin = ty,
                dropped_bytes = state.log.dropped(),
                "plugin log over budget"
            );
        }
        match state.denials.first() {
            Some(denial) => Err(cni(
                Code::InvalidConfig,
                ty,
                format!("sandbox denied {denial}"),
            )),
            None => Ok(()),
        }
    }
}

/// A call's store, kernel and cluster backends.
type Backed = (
    Option<Box<dyn StoreBackend>>,
    Box<dyn KernelBackend>,
    Option<Box<dyn ClusterBackend>>,
);

/// Where a call's host calls go.
pub enum Backends {
    /// The kernel (the pod's netns) and the plugin's store on disk.
    Real,
    /// Recording backends that change nothing (`multusctl plugin run
    /// --dry-run`); the store starts with what `store` holds.
    Recording {
        kernel: RecordingKernel,
        store: RecordingStore,
        cluster: RecordingCluster,
    },
}

impl Backends {
    /// The same recording backends (they share what they record), or
    /// `Real` again.
    fn recording_clone(&self) -> Backends {
        match self {
            Backends::Real => Backends::Real,
            Backends::Recording {
                kernel,
                store,
                cluster,
            } => Backends::Recording {
                kernel: kernel.clone(),
                store: store.clone(),
                cluster: cluster.clone(),
            },
        }
    }
}

/// Runs `module` for `call` in role `role`. Returns what the plugin would
/// have printed on stdout (a result JSON for ADD, nothing otherwise).
pub fn run(
    conf: &WasmConf,
    role: Role,
    module: &Path,
    call: &PluginCall<'_>,
) -> Result<(Vec<u8>, Timings), PluginError> {
    run_with(conf, role, module, call, Backends::Real)
}

/// `run` against `backends`.
pub fn run_with(
    conf: &WasmConf,
    role: Role,
    module: &Path,
    call: &PluginCall<'_>,
    backends: Backends,
) -> Result<(Vec<u8>, Timings), PluginError> {
    let ty = call.plugin_type;
    let mut t = Timings::default();
    let settings = conf
        .settings(ty)
        .map_err(|e| cni(Code::InvalidConfig, ty, e))?;
    let mut config: Value = serde_json::from_slice(call.stdin)
        .map_err(|e| cni(Code::Decode, ty, format!("config: {e}")))?;
    // Every config value that names a host resource passes the boundary
    // before anything runs: the IPAM type, the flat file, the store, the
    // credentials.
    let refused = |r: boundary::Refused| cni(Code::InvalidConfig, ty, r);
    let ipam_type = match role {
        Role::Chained => match config.as_object() {
            Some(c) => ipam_type(c, "ipam.type").map_err(refused)?,
            None => None,
        },
        _ => None,
    };
    // What the config itself names, before the admin's flat file fills in.
    let named_kubeconfig = config
        .pointer("/ipam/kubernetes/kubeconfig")
        .and_then(Value::as_str)
        .map(String::from);
    // whereabouts' flat-file defaults, read here on the module's behalf.
    let flat_file = match role {
        Role::Ipam => {
            cluster::merge_flat_file(&mut config, &conf.bounds, settings.host_call_timeout())
                .map_err(refused)?
        }
        _ => None,
    };
    let node = cluster::node_name(conf.node_name.as_deref());
    let g = grant::compute(role, call, &config, &settings, &conf.bounds, &node).map_err(refused)?;
    let kubeconfig = match &g.cluster {
        Some(_) => cluster::kubeconfig(
            named_kubeconfig.as_deref(),
            flat_file.as_ref(),
            &conf.bounds,
            conf.kubeconfig.as_deref(),
        )
        .map_err(refused)?,
        None => None,
    };
    let cluster_backend = |recording: Option<RecordingCluster>| -> Option<Box<dyn ClusterBackend>> {
        g.cluster.as_ref()?;
        Some(match recording {
            Some(r) => Box::new(r),
            None => Box::new(cluster::KubeCluster::new(
                kubeconfig.clone(),
                settings.cluster_namespace.clone(),
                settings.cluster_call_timeout(),
                Instant::now() + settings.timeout(true),
            )),
        })
    };
    let dry_run = match &backends {
        Backends::Real => None,
        b => Some(b.recording_clone()),
    };
    let (store, kernel, cluster): Backed = match backends {
        Backends::Real => {
            let pod = match &g.netns {
                Some(p) => match PodNetns::open(p, settings.host_call_timeout()) {
                    Ok(ns) => Some(ns),
                    // DEL, GC and STATUS must work after the pod is gone;
                    // calls into its namespace then answer "not found",
                    // which plugins tolerate.
                    Err(e)
                        if matches!(call.command, Command::Del | Command::Gc | Command::Status)
                            && !p.exists() =>
                    {
                        tracing::debug!(plugin = ty.as_str(), error = %e, "pod netns gone; container calls will find nothing");
                        None
                    }
                    Err(e) => return Err(cni(Code::InvalidConfig, ty, format!("CNI_NETNS: {e}"))),
                },
                None => None,
            };
            let store = g.store_root.clone().map(|dir| {
                Box::new(FsStore {
                    dir,
                    lock_timeout: settings.host_call_timeout(),
                }) as Box<dyn StoreBackend>
            });
            let kernel = Kernel {
                pod,
                host: None,
                timeout: settings.host_call_timeout(),
            };
            (store, Box::new(kernel), cluster_backend(None))
        }
        Backends::Recording {
            kernel,
            store,
            cluster,
        } => (
            g.store_root
                .is_some()
                .then(|| Box::new(store) as Box<dyn StoreBackend>),
            Box::new(kernel),
            cluster_backend(Some(cluster)),
        ),
    };
    // An interface plugin's IPAM, run by the host when the plugin asks.
    let delegated = |t: &PluginType| ipam::DelegatedIpam {
        dry_run: dry_run.as_ref().map(Backends::recording_clone),
        wasm: conf.clone(),
        ipam_type: t.clone(),
        container_id: call.container_id.to_string(),
        netns: call.netns.to_string(),
        ifname: call.ifname.to_string(),
        cni_args: call.cni_args.to_string(),
        path: call.path.to_vec(),
        stdin: call.stdin.to_vec(),
    };
    let ipam = ipam_type
        .as_ref()
        .map(|t| Box::new(delegated(t)) as Box<dyn multus_host_functions::links::IpamBackend>);
    // STATUS asks the config's IPAM too, as the reference interface plugins
    // do (`ipam.ExecStatus`): an interface plugin is not ready while its
    // IPAM is not. The host does it, so every module gets it.
    let ipam_status = ipam_type
        .as_ref()
        .filter(|_| call.command == Command::Status)
        .map(delegated);
    // The node's turns, beside the artifacts in the admin's cache dir
    // (never a path of the config's); none in a dry run.
    let turns = match (&g.cluster, &dry_run) {
        (Some(c), None) => Some(Turns::new(
            conf.cache_dir.join("turns"),
            &c.node,
            // All the call's turns together (`cluster.take-turn`): a turn
            // lasts a few cluster calls, so as long as one of them may take
            // (under load, seconds: a 2 s wait sent a node's second pod
            // racing its first into 409s; a wait as long as the whole ADD
            // doubled the time to answer half of 500 nodes' pods). Never
            // most of the call's own deadline, which only a returning host
            // call can notice.
            settings
                .cluster_call_timeout()
                .min(settings.timeout(true) / 4),
        )),
        _ => None,
    };
    let reach = Reach {
        grant: g,
        store,
        kernel,
        cluster,
        ipam,
        turns,
        container_id: call.container_id.to_string(),
    };
    let mut sb = Sandbox::new(conf, (role, ty, settings), module, reach, &mut t)?;

    let started = Instant::now();
    let Pre::Plugin(pre) = sb.pre.clone() else {
        unreachable!("plugin roles link the plugin world")
    };
    let instance: PluginHost = pre
        .instantiate(&mut sb.store)
        .map_err(|e| cni(Code::InvalidConfig, ty, instantiate_failed(&e)))?;
    t.instantiate += started.elapsed();

    let req = wit::CniRequest {
        command: match call.command {
            Command::Add => wit::Command::Add,
            Command::Del => wit::Command::Del,
            Command::Check => wit::Command::Check,
            Command::Status => wit::Command::Status,
            Command::Gc | Command::Version => wit::Command::Gc,
        },
        container_id: call.container_id.to_string(),
        ifname: call.ifname.to_string(),
        config: match &flat_file {
            Some(_) => config.to_string(),
            None => String::from_utf8_lossy(call.stdin).into_owned(),
        },
        args: call
            .cni_args
            .split(';')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let started = Instant::now();
    let exports = instance.multus_plugin_plugin();
    let outcome = call_export(exports, &mut sb.store, call.command, &req, &config);
    t.call = started.elapsed();
    sb.finish(ty)?;
    let what = call.command.as_str().to_ascii_lowercase();
    let out = match outcome {
        Err(trap) => {
            return Err(cni(
                Code::Internal,
                ty,
                describe_trap(&trap, &what, sb.timeout, &sb.settings),
            ))
        }
        Ok(Err(e)) => return Err(guest_error(ty, e)),
        Ok(Ok(None)) => {
            if let Some(ipam) = &ipam_status {
                ipam.run(Command::Status).map_err(|e| {
                    PluginError::Cni(CniError {
                        code: e.code,
                        msg: format!(
                            "wasm plugin {ty:?} STATUS: its IPAM {:?}: {}",
                            ipam.ipam_type, e.msg
                        ),
                        details: e.details,
                    })
                })?;
            }
            Vec::new()
        }
        Ok(Ok(Some(r))) => {
            let version = config
                .get("cniVersion")
                .and_then(Value::as_str)
                .unwrap_or("1.1.0");
            let grant = &sb.store.data().grant;
            let pod_links: Vec<String> = grant
                .links
                .iter()
                .chain(&grant.pod_created)
                .cloned()
                .collect();
            // Bounded first: the ownership check's message names the interface.
            let result = convert::result(&r, call.netns)
                .and_then(|result| convert::owned_interfaces(&r, &pod_links).map(|()| result))
                .map_err(|m| cni(Code::Decode, ty, format!("its result: {m}")))?;
            serde_json::to_vec(&result.to_value(version)).expect("result serializes")
        }
    };
    t.log(ty, "wasm call");
    Ok((out, t))
}

/// A plugin's own error, with the plugin named; its text cut to what a
/// message carries.
fn guest_error(ty: &str, e: wit::CniError) -> PluginError {
    use multus_host_functions::text::clip;
    PluginError::Cni(CniError {
        code: e.code,
        msg: format!("wasm plugin {ty:?}: {}", clip(e.msg, MAX_GUEST_TEXT)),
        details: clip(e.details, MAX_GUEST_TEXT),
    })
}

/// The most random bytes one WASI call returns: far above a seed or a
/// UUID, and bytes the host allocates outside the module's memory.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// An instantiation's failure in words: a start function's trap carries a
/// backtrace naming the module's own functions, cut to size.
fn instantiate_failed(e: &wasmtime::Error) -> String {
    format!(
        "instantiate: {}",
        multus_host_functions::text::clip(format!("{e:#}"), MAX_GUEST_TEXT)
    )
}

/// The most of a module's error text (or of a trap naming its functions)
/// that reaches a CNI error and the log.
const MAX_GUEST_TEXT: usize = 4096;

/// Runs the annotation mapper `module` (named `name` in the conf): pod
/// metadata and the selection so far in, the new selection out. A mapper
/// reaches nothing but the log.
pub fn map(
    conf: &WasmConf,
    name: &PluginType,
    module: &Path,
    config: &str,
    pod: &wit_mapper::PodMetadata,
    selected: &[wit_mapper::NetworkSelection],
) -> Result<Vec<wit_mapper::NetworkSelection>, PluginError> {
    let mut t = Timings::default();
    let settings = conf
        .settings(name)
        .map_err(|e| cni(Code::InvalidConfig, name, e))?;
    let reach = Reach {
        grant: grant::none(name, &settings),
        store: None,
        kernel: Box::new(Kernel {
            pod: None,
            host: None,
            timeout: settings.host_call_timeout(),
        }),
        cluster: None,
        ipam: None,
        turns: None,
        container_id: format!("{}/{}", pod.namespace, pod.name),
    };
    let mut sb = Sandbox::new(conf, (Role::Mapper, name, settings), module, reach, &mut t)?;
    let started = Instant::now();
    let Pre::Mapper(pre) = sb.pre.clone() else {
        unreachable!("the mapper role links the mapper world")
    };
    let instance = pre
        .instantiate(&mut sb.store)
        .map_err(|e| cni(Code::InvalidConfig, name, instantiate_failed(&e)))?;
    t.instantiate += started.elapsed();
    let started = Instant::now();
    let outcome =
        instance
            .multus_plugin_mapper()
            .call_select_networks(&mut sb.store, config, pod, selected);
    t.call = started.elapsed();
    t.log(name, "wasm mapper call");
    sb.finish(name)?;
    match outcome {
        Err(trap) => Err(cni(
            Code::Internal,
            name,
            describe_trap(&trap, "select-networks", sb.timeout, &sb.settings),
        )),
        Ok(Err(e)) => Err(guest_error(name, e)),
        Ok(Ok(list)) => Ok(list),
    }
}

/// The linker with WASI and every `multus:plugin` import, built once per
/// process (it does not depend on the call; the grant lives in the store).
fn linker(engine: &wasmtime::Engine) -> Result<&'static Linker<HostState>, String> {
    static LINKER: OnceLock<Result<Linker<HostState>, String>> = OnceLock::new();
    LINKER
        .get_or_init(|| {
            let mut linker = Linker::new(engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| e.to_string())?;
            PluginHost::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
                .map_err(|e| e.to_string())?;
            Ok(linker)
        })
        .as_ref()
        .map_err(Clone::clone)
}

type Outcome = wasmtime::Result<Result<Option<wit::CniResult>, wit::CniError>>;

fn call_export(
    exports: &wit_plugin::Guest,
    store: &mut Store<HostState>,
    command: Command,
    req: &wit::CniRequest,
    config: &Value,
) -> Outcome {
    Ok(match command {
        Command::Add => exports.call_add(&mut *store, req)?.map(Some),
        Command::Del => exports.call_del(&mut *store, req)?.map(|()| None),
        Command::Check => exports.call_check(&mut *store, req)?.map(|()| None),
        Command::Status => exports.call_status(&mut *store, req)?.map(|()| None),
        Command::Gc | Command::Version => {
            let valid: Vec<wit::Attachment> = config
                .get("cni.dev/valid-attachments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    Some(wit::Attachment {
                        container_id: a.get("containerID")?.as_str()?.to_string(),
                        ifname: a.get("ifname")?.as_str()?.to_string(),
                    })
                })
                .collect();
            exports.call_gc(&mut *store, req, &valid)?.map(|()| None)
        }
    })
}

/// A trap in words: out of time, out of memory, or a crash.
fn describe_trap(
    e: &wasmtime::Error,
    call: &str,
    timeout: Duration,
    settings: &crate::config::PluginSettings,
) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "{call} timed out after {}ms (epoch deadline)",
            timeout.as_millis()
        ),
        Some(trap) => format!(
            "{call} trapped: {trap} (memory limit {} MiB)",
            settings.memory_limit_mib
        ),
        None => {
            // A backtrace names the module's own functions: cut to size.
            let why = multus_host_functions::text::clip(format!("{e:#}"), MAX_GUEST_TEXT);
            // wasmtime's hostcall fuel ran out (`set_hostcall_fuel`); its
            // error type is private, so it is known by its words (in the
            // root cause: the chain prints it after the backtrace).
            if e.root_cause()
                .to_string()
                .contains("fuel allocated for hostcalls")
            {
                format!(
                    "{call} failed: {why} (a copy out of the module is bounded by its memory limit, {} MiB)",
                    settings.memory_limit_mib
                )
            } else {
                format!("{call} failed: {why}")
            }
        }
    }
}

//! The per-invocation store data (WASI context, grant, backends) and the
//! host side of every WIT interface, one file each, with each call's grant
//! check beside the call it guards: `store`, `netlink`, `routing`, `links`,
//! `sysctl`, `cluster`, `log`.

mod cluster;
mod kernel;
mod limits;
mod links;
mod log;
mod netlink;
mod routing;
mod store;
mod sysctl;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::multus::plugin::types;
use crate::cluster::ClusterBackend;
use crate::grant::Grant;
use crate::links::IpamBackend;
use crate::log::LogSink;
use crate::store::StoreBackend;
use crate::{HostError, WitError};
pub use kernel::{KernelBackend, RecordingKernel};
pub use limits::Limits;

/// Resources (streams, pollables, store transactions) one call may hold at
/// once: each is host memory outside the module's cap (wasmtime's own
/// bound is a million).
const MAX_RESOURCES: usize = 4096;

/// Refusals an invocation keeps: the runtime names the first.
const MAX_DENIALS: usize = 8;

pub struct HostState {
    pub grant: Grant,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: Limits,
    pub store: Option<Box<dyn StoreBackend>>,
    pub kernel: Box<dyn KernelBackend>,
    /// Cluster calls, when the grant allows any.
    pub cluster: Option<Box<dyn ClusterBackend>>,
    /// The node's turns on cluster objects (none in a dry run: every
    /// `take-turn` then goes on without).
    pub turns: Option<crate::turns::Turns>,
    /// The config's IPAM, for interface plugins.
    pub ipam: Option<Box<dyn IpamBackend>>,
    pub log: LogSink,
    /// The first refusals, so the runtime can name one even if the guest
    /// hides it.
    pub denials: Vec<String>,
}

impl HostState {
    pub fn new(
        grant: Grant,
        wasi: WasiCtx,
        memory_limit: usize,
        store: Option<Box<dyn StoreBackend>>,
        kernel: Box<dyn KernelBackend>,
        container_id: &str,
    ) -> Self {
        let log = LogSink::new(&grant.plugin, container_id);
        Self {
            grant,
            wasi,
            table: {
                let mut t = ResourceTable::new();
                t.set_max_capacity(MAX_RESOURCES);
                t
            },
            limits: Limits::new(memory_limit),
            store,
            kernel,
            cluster: None,
            turns: None,
            ipam: None,
            log,
            denials: Vec::new(),
        }
    }

    fn fail(&mut self, call: &str, e: HostError) -> WitError {
        if matches!(e, HostError::Denied(_)) {
            self.deny(format!("{call}: {e}"));
        }
        e.to_wit(call)
    }

    /// A refusal, kept for the runtime to name: the first few, each
    /// bounded (a guest looping on denied calls must not grow the host).
    fn deny(&mut self, what: String) {
        if self.denials.len() < MAX_DENIALS {
            self.denials.push(crate::text::clip(what, 1024));
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

/// A host state for `net1` in a pod netns on `kernel`, for tests.
#[cfg(test)]
pub(crate) fn test_state(
    store: Option<crate::store::RecordingStore>,
    kernel: RecordingKernel,
) -> HostState {
    let mut g = crate::grant::test_grant(&["net1"]);
    g.netns = Some("/run/netns/pod".into());
    let store = store.map(|s| Box::new(s) as Box<dyn StoreBackend>);
    HostState::new(
        g,
        WasiCtx::builder().build(),
        1 << 20,
        store,
        Box::new(kernel),
        "cid",
    )
}

//! Host bindings generated from `wit/`. One `bindgen!` over the `chained`
//! world covers every import (log, store, netlink, sysctl) and the `plugin`
//! export that all worlds share; which imports a given component may use is
//! enforced by the runtime's import audit, not by linking less.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "chained",
    with: {
        "multus:plugin/store.transaction": crate::store::Transaction,
    },
    require_store_data_send: true,
});

/// The `annotation-mapper` world. It shares `types` and `log` with the
/// plugin worlds, so one linker and one `HostState` serve both.
pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "annotation-mapper",
        with: {
            "multus:plugin/types": super::multus::plugin::types,
            "multus:plugin/log": super::multus::plugin::log,
        },
        require_store_data_send: true,
    });
}

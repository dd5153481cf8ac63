//! Host bindings generated from `wit/`. One `bindgen!` over a host-only
//! world that includes `chained` and imports `cluster` covers every import
//! (log, store, netlink, routing, sysctl, cluster) and the `plugin` export
//! that all plugin worlds share; which imports a given component may use is
//! enforced by the runtime's import audit, not by linking less.

wasmtime::component::bindgen!({
    path: "../wit",
    inline: "
        package multus:host;
        world plugin-host {
            include multus:plugin/chained@0.1.6;
            import multus:plugin/cluster@0.1.6;
            import multus:plugin/links@0.1.6;
        }
    ",
    world: "multus:host/plugin-host",
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

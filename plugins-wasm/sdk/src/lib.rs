//! The SDK for multus wasm plugins (`multus:plugin@0.1.6`).
//!
//! A plugin is one `lib.rs`: implement [`Plugin`] and call [`export!`].
//!
//! ```ignore
//! struct MyIpam;
//! impl multus_plugin_sdk::Plugin for MyIpam {
//!     fn add(req: Request) -> Result<CniResult, CniError> { ... }
//!     ...
//! }
//! multus_plugin_sdk::export!(MyIpam);
//! ```

pub mod conf;
pub mod iface;
pub mod ip;

#[doc(hidden)]
pub mod bindings {
    // Every import a plugin world offers (chained's and cluster-ipam's): a
    // module imports only what it calls, which decides its world.
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package multus:sdk;
            world plugin {
                include multus:plugin/chained@0.1.6;
                import multus:plugin/cluster@0.1.6;
                import multus:plugin/links@0.1.6;
            }
        ",
        world: "multus:sdk/plugin",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "multus_plugin_sdk::bindings",
    });
}

/// Annotation mappers (`annotation-mapper` world): implement [`Mapper`] and
/// call [`export_mapper!`].
pub mod mapper {
    #[doc(hidden)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "annotation-mapper",
            with: {
                "multus:plugin/types@0.1.6": crate::bindings::multus::plugin::types,
                "multus:plugin/log@0.1.6": crate::bindings::multus::plugin::log,
            },
            pub_export_macro: true,
            export_macro_name: "__export_mapper_world",
            default_bindings_module: "multus_plugin_sdk::mapper::bindings",
        });
    }

    pub use bindings::exports::multus::plugin::mapper::{
        Guest as Mapper, NetworkSelection, PodMetadata,
    };

    impl PodMetadata {
        pub fn annotation(&self, key: &str) -> Option<&str> {
            self.annotations
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        pub fn label(&self, key: &str) -> Option<&str> {
            self.labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
    }

    impl NetworkSelection {
        /// A selection of NAD `name` with every other field unset.
        pub fn named(name: &str) -> Self {
            Self {
                name: name.to_string(),
                namespace: None,
                interface: None,
                ips: Vec::new(),
                mac: None,
                default_route: None,
                cni_args: None,
                port_mappings: None,
                bandwidth: None,
                infiniband_guid: None,
                ipam_claim_reference: None,
                device_id: None,
            }
        }
    }
}

/// Exports a type implementing [`mapper::Mapper`] as the component's `mapper`.
#[macro_export]
macro_rules! export_mapper {
    ($t:ident) => {
        $crate::mapper::bindings::__export_mapper_world!($t with_types_in $crate::mapper::bindings);
    };
}

pub use bindings::exports::multus::plugin::plugin::Guest as Plugin;
pub use bindings::multus::plugin::types::{
    Attachment, CniError, CniRequest as Request, CniResult, Command, Dns, Interface, IpConfig,
    Route,
};
pub use bindings::multus::plugin::{cluster, links, log, netlink, routing, store, sysctl};

/// Exports a type implementing [`Plugin`] as the component's `plugin`.
#[macro_export]
macro_rules! export {
    ($t:ident) => {
        $crate::bindings::__export_world!($t with_types_in $crate::bindings);
    };
}

/// CNI error codes (spec 1.1.0).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const INTERNAL: u32 = 999;
}

/// A CNI error with `code` and a message.
pub fn error(code: u32, msg: impl Into<String>) -> CniError {
    CniError {
        code,
        msg: msg.into(),
        details: String::new(),
    }
}

/// Shorthand for an invalid-config error (code 7).
pub fn invalid(msg: impl Into<String>) -> CniError {
    error(code::INVALID_CONFIG, msg)
}

/// Sets link `name` of namespace `ns` up, changing nothing else.
pub fn link_up(ns: netlink::Namespace, name: &str) -> Result<(), CniError> {
    netlink::link_set(
        ns,
        name,
        &netlink::LinkChange {
            up: Some(true),
            mtu: None,
            mac: None,
            promisc: None,
            allmulti: None,
            txqlen: None,
        },
    )
}

/// Logs at info level into the runtime's log.
pub fn info(msg: &str) {
    log::log(log::Level::Info, msg);
}

/// Logs at debug level into the runtime's log.
pub fn debug(msg: &str) {
    log::log(log::Level::Debug, msg);
}

impl CniResult {
    pub fn empty() -> Self {
        CniResult {
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: None,
        }
    }
}

impl Request {
    /// The value of a CNI_ARGS key.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

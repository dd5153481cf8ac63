//! Configuration: the multus conf, delegate network configs and their lookup.

pub mod keys;
pub mod multus;
pub mod netconf;
pub mod resolve;
pub mod wasm;

pub use multus::{Attachment, ClusterNetwork, LogLevel, MultusConf};
pub use netconf::NetworkConfig;
pub use wasm::{PluginSettings, WasmConf};

//! Configuration: the multus conf, delegate network configs and their lookup.

pub mod keys;
pub mod kube;
pub mod master;
pub mod multus;
pub mod netconf;
pub mod resolve;
pub mod wasm;

pub use kube::KubeConf;
pub use multus::{Attachment, ClusterNetwork, LogLevel, MultusConf};
pub use netconf::NetworkConfig;
pub use wasm::{PluginSettings, WasmConf};

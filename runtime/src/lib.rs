//! multus-wasm: a drop-in Multus CNI meta-plugin.
//!
//! `cni` is the protocol, `config` the multus conf and delegate configs,
//! `delegate` how one network's plugins run, `cache` what DEL needs later,
//! `invoke` the per-command orchestration and `app` the binary's entry.

pub mod app;
pub mod boundary;
pub mod cache;
pub mod cni;
pub mod config;
pub mod default_route;
pub mod delegate;
pub mod entry;
pub mod fsutil;
pub mod invoke;
pub mod k8s;
pub mod logging;
pub mod naming;
pub mod outcome;
pub mod readiness;
pub mod shim;

//! Thick mode, as upstream Multus runs it: `multus-daemon` serves the CNI
//! requests that `multus-shim` forwards over a unix socket.
//!
//! `protocol` is the wire format (upstream's), `config` the daemon config,
//! `admit` the bound on requests in flight, `metrics` what the daemon
//! exports, `server` the daemon's HTTP server, `shim_conf` the conf it
//! writes for the runtime, `client` the shim's side, `chroot` the start-up
//! check of `chrootDir`.

pub mod admit;
pub mod api_access;
pub mod chroot;
pub mod client;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod per_container;
pub mod protocol;
pub mod server;
pub mod shim_conf;

//! One file per `multusctl` subcommand.

pub mod install;
pub mod ipam;
pub mod plugin;

//! One file per `multusctl` subcommand.

pub mod doctor;
pub mod install;
pub mod ipam;
pub mod plugin;

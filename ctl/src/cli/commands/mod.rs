//! One file per `multusctl` subcommand.

pub mod install;
pub mod plugin;

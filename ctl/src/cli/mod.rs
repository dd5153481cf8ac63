//! The command line: one subcommand per file in `commands/`.

pub mod commands;

use clap::{Parser, Subcommand};

/// `--version`: this build and the contracts it hosts.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (WIT multus:plugin@0.1.6, CNI 0.1.0 to 1.1.0)"
);

#[derive(Debug, Parser)]
#[command(name = "multusctl", version = VERSION, about = "multus-wasm admin and plugin-author tool")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Install multus on this node (from a DaemonSet pod with the host mounted).
    Install(Box<crate::install::Options>),
    /// Wasm plugin tools.
    #[command(subcommand)]
    Plugin(commands::plugin::PluginCommand),
    /// Cluster-wide IPAM (whereabouts pools) administration.
    #[command(subcommand)]
    Ipam(commands::ipam::IpamCommand),
    /// Check this node's install and explain each problem found.
    Doctor(commands::doctor::DoctorArgs),
}

/// Runs the parsed command; the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Commands::Install(opts) => commands::install::run(&opts),
        Commands::Plugin(cmd) => commands::plugin::run(&cmd),
        Commands::Ipam(cmd) => commands::ipam::run(&cmd),
        Commands::Doctor(args) => commands::doctor::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_hosted_contracts() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(
            VERSION.contains(multus_host_functions::WIT_PACKAGE),
            "{VERSION}"
        );
        let (oldest, newest) = (
            multus::cni::version::SUPPORTED[0],
            multus::cni::version::CURRENT,
        );
        assert!(
            VERSION.contains(&format!("CNI {oldest} to {newest}")),
            "{VERSION}"
        );
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

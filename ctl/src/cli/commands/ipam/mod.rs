//! `multusctl ipam`: cluster-wide IPAM administration, one file per
//! subcommand.

pub mod reconcile;

#[derive(Debug, clap::Subcommand)]
pub enum IpamCommand {
    /// Free the whereabouts allocations and reservations of pods that no
    /// longer exist (deleted while their node was down, say).
    Reconcile(reconcile::ReconcileArgs),
}

pub fn run(cmd: &IpamCommand) -> i32 {
    match cmd {
        IpamCommand::Reconcile(args) => reconcile::run(args),
    }
}

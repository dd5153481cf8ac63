//! `multusctl ipam`: cluster-wide IPAM administration, one file per
//! subcommand.

pub mod reconcile;
pub mod slices;

#[derive(Debug, clap::Subcommand)]
pub enum IpamCommand {
    /// Free the whereabouts allocations and reservations of pods that no
    /// longer exist (deleted while their node was down, say).
    Reconcile(reconcile::ReconcileArgs),
    /// Give every Node a slice of each range a NAD cuts into node slices
    /// (whereabouts' `node_slice_size`) before its pods ask; free the
    /// slices of deleted Nodes. Runs until stopped (deploy/whereabouts
    /// runs it as a Deployment), or `--once`.
    Slices(slices::SlicesArgs),
}

pub fn run(cmd: &IpamCommand) -> i32 {
    match cmd {
        IpamCommand::Reconcile(args) => reconcile::run(args),
        IpamCommand::Slices(args) => slices::run(args),
    }
}

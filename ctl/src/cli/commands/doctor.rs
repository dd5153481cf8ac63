//! `multusctl doctor`: checks this node's multus install and says what to
//! do about each problem. Exit 0 when nothing is wrong (warnings allowed),
//! 1 when a check failed, 2 for a bad flag.

use std::path::PathBuf;

use crate::doctor::{run as diagnose, Node};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The host's `/` (`/host` in the DaemonSet's pods).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// The runtime's CNI conf dir, as a host path.
    #[arg(long, value_name = "DIR", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The runtime's CNI bin dir, as a host path.
    #[arg(long, value_name = "DIR", default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// host-local data dirs to check reservations in, as host paths
    /// (repeatable).
    #[arg(long = "ipam-data-dir", value_name = "DIR", default_values = ["/var/lib/cni/networks"])]
    pub ipam_data_dirs: Vec<PathBuf>,
    /// The image's binaries, to compare the installed ones with (in the
    /// DaemonSet's pods: `/usr/bin`).
    #[arg(long, value_name = "DIR")]
    pub image_bin_dir: Option<PathBuf>,
    /// Print the findings as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DoctorArgs) -> i32 {
    if !args.host_root.is_dir() {
        eprintln!(
            "multusctl doctor: --host-root {} is not a directory",
            args.host_root.display()
        );
        return 2;
    }
    for (flag, p) in [
        ("--cni-conf-dir", &args.cni_conf_dir),
        ("--cni-bin-dir", &args.cni_bin_dir),
    ] {
        if !p.is_absolute() {
            eprintln!(
                "multusctl doctor: {flag} {} must be an absolute host path",
                p.display()
            );
            return 2;
        }
    }
    let report = diagnose(&Node {
        host_root: args.host_root.clone(),
        cni_conf_dir: args.cni_conf_dir.clone(),
        cni_bin_dir: args.cni_bin_dir.clone(),
        ipam_data_dirs: args.ipam_data_dirs.clone(),
        image_bin_dir: args.image_bin_dir.clone(),
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        print!("{}", report.render());
    }
    i32::from(report.errors > 0)
}

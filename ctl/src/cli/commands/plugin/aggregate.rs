//! `multusctl plugin aggregate`: the one writer of WasmPlugins' status
//! (deploy/plugins runs it as a Deployment of one). It sums every node's
//! WasmPluginNode into each object's counts, then watches the reports:
//! each change starts a pass after `--settle` (so a rollout's hundreds of
//! reports are counted in a few passes, not one each), and every
//! `--interval` a pass runs anyway (a new object no node has reported on
//! yet). Two of them at once (a rolling update) count the same reports,
//! and the status write is guarded by the listed resourceVersion, so they
//! do not fight. SIGTERM/SIGINT end it within a watch window.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::install::watch::sleep_unless;
use crate::objects::report;
use crate::objects::status::aggregate_once;
use crate::objects::wait::{start, wait, Retry};

#[derive(Debug, clap::Args)]
pub struct AggregateArgs {
    /// The API credentials; default the pod's service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// A full pass at least this often, changes or not.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long after a report changes the pass starts: the reports that
    /// come meanwhile are counted in the same pass.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// One pass, then exit (1 if the API failed or a status write did).
    #[arg(long)]
    pub once: bool,
}

pub fn run(a: &AggregateArgs) -> i32 {
    let (kube, stop) = match start("plugin aggregate", a.kubeconfig.as_ref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut retry = Retry::default();
    loop {
        let (ok, from) = match aggregate_once(&kube) {
            Ok(pass) => {
                for name in &pass.written {
                    tracing::debug!(plugin = %name, "status written");
                }
                (pass.failed.is_empty(), pass.resource_version)
            }
            Err(e) => {
                tracing::error!(error = %e, "listing WasmPlugins and their reports");
                (false, None)
            }
        };
        if a.once {
            return i32::from(!ok);
        }
        if !ok {
            if sleep_unless(&stop, retry.backoff()) {
                return 0;
            }
            continue;
        }
        retry = Retry::default();
        // Every report's change is one (no generations to compare).
        if wait(
            &kube,
            &report::resource(),
            from,
            &BTreeMap::new(),
            a.interval,
            &stop,
        ) || sleep_unless(&stop, a.settle)
        {
            return 0;
        }
    }
}

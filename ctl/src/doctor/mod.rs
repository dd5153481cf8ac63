//! `multusctl doctor`: checks a node's multus install and explains each
//! problem with what to do. Every check reads the host's files (under
//! `host_root`, the host's `/` as a DaemonSet pod mounts it) and, for thick
//! mode, asks the daemon over its socket; none changes anything.

mod credentials;
mod daemon;
mod leftovers;
mod modules;
mod runtime_conf;

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Error,
}

/// One thing checked: what was found and, unless it is fine, what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Self {
            check,
            level: Level::Ok,
            message: message.into(),
            fix: None,
        }
    }
    pub fn warning(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            level: Level::Warning,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn error(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            level: Level::Error,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Where the node keeps things, as host paths.
#[derive(Debug, Clone)]
pub struct Node {
    pub host_root: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    /// host-local's data dirs to look for reservations in.
    pub ipam_data_dirs: Vec<PathBuf>,
    /// The image's binaries, to compare the installed ones with (the
    /// DaemonSet's own copies); none: not compared.
    pub image_bin_dir: Option<PathBuf>,
}

impl Node {
    /// A host path as this process sees it.
    pub fn host(&self, p: &Path) -> PathBuf {
        multus::fsutil::under_root(&self.host_root, p)
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub errors: usize,
    pub warnings: usize,
}

/// Runs every check. The runtime's conf comes first: the others read
/// multus's own conf, so without one they say so and stop.
pub fn run(node: &Node) -> Report {
    let mut findings = Vec::new();
    let ours = runtime_conf::check(node, &mut findings);
    if let Some(ours) = &ours {
        runtime_conf::check_master(node, ours, &mut findings);
    }
    modules::check_binaries(node, ours.as_ref(), &mut findings);
    if let Some(ours) = &ours {
        modules::check_modules(node, ours, &mut findings);
        daemon::check(node, ours, &mut findings);
        credentials::check(node, ours, &mut findings);
        leftovers::check_cache(node, ours, &mut findings);
        leftovers::check_reservations(node, ours, &mut findings);
    }
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    Report {
        errors: count(Level::Error),
        warnings: count(Level::Warning),
        findings,
    }
}

impl Report {
    /// One line per finding, its fix indented under it, then the tally.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Warning => "WARN",
                Level::Error => "FAIL",
            };
            out.push_str(&format!("{tag} {}: {}\n", f.check, f.message));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("     fix: {fix}\n"));
            }
        }
        out.push_str(&format!(
            "doctor: {} checks, {} errors, {} warnings\n",
            self.findings.len(),
            self.errors,
            self.warnings
        ));
        out
    }
}

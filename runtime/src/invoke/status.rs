//! STATUS: every network of the conf; the worst answer wins.

use crate::cni::{CniError, Code, Command};
use crate::delegate::chain;

use super::{combine, DeviceIds, Invocation};

impl Invocation<'_> {
    /// STATUS of every network of the conf; the worst answer wins.
    pub fn status(&self) -> Result<(), CniError> {
        if let Some(f) = &self.conf.readiness_indicator_file {
            if !f.exists() {
                return Err(CniError::new(
                    Code::NotAvailable,
                    format!(
                        "readinessindicatorfile {} is missing: the cluster network is not ready",
                        f.display()
                    ),
                ));
            }
        }
        let path = self.search_path();
        let mut errors = Vec::new();
        for p in self.plan(None, DeviceIds::Skip)? {
            if !chain::has_status_and_gc(&p.net) {
                continue;
            }
            let target = self.target(&p.cached, &path, "");
            if let Err(e) = self.run_logged(Command::Status, &p.cached, || {
                chain::status(self.runner, &p.net, &target)
            }) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(|e| std::cmp::Reverse(status_severity(e.code)));
        Err(combine(errors))
    }
}

/// STATUS's order of badness: 51 (existing pods affected) over 50 over the rest.
fn status_severity(code: u32) -> u8 {
    match code {
        51 => 2,
        50 => 1,
        _ => 0,
    }
}

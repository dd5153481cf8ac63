//! CHECK: every cached attachment, in order.

use crate::cache;
use crate::cni::{CniError, Code, Command};
use crate::delegate::chain;

use super::Invocation;

impl Invocation<'_> {
    /// CHECK every attachment the cache lists, in order.
    pub fn check(&self) -> Result<(), CniError> {
        let cache_path = cache::path(&self.conf.cni_dir, &self.env.container_id);
        let loaded = cache::read(&self.conf.cni_dir, &self.env.container_id, &self.env.ifname)?;
        let file = match loaded {
            Some(l) if l.file().complete => l,
            _ => {
                return Err(CniError::new(
                    Code::UnknownContainer,
                    format!(
                        "CHECK: container {} has no completed ADD (no cache at {})",
                        self.env.container_id,
                        cache_path.display()
                    ),
                ))
            }
        };
        let path = self.search_path();
        for d in &file.file().delegates {
            let net = d.network(&cache_path)?;
            if !chain::checks(&net) {
                tracing::debug!(network = %net.name, version = %net.cni_version, "CHECK skipped: before 0.4.0 or disableCheck");
                continue;
            }
            let prev = d.result.as_ref().ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!(
                        "CHECK: cache {} has no result for network {:?}",
                        cache_path.display(),
                        d.network_name
                    ),
                )
            })?;
            let target = self.target(d, &path, &self.env.netns);
            self.run_logged(Command::Check, d, || {
                chain::check(self.runner, &net, &target, prev)
            })?;
        }
        Ok(())
    }
}

//! DEL: from the cache (or, without one, from the conf and the pod), every
//! network in reverse, going past failures.

use crate::cache::{self, Loaded};
use crate::cni::{CniError, Command};
use crate::delegate::chain;
use crate::k8s::devices;
use crate::k8s::PodContext;

use super::{combine, DeviceIds, Invocation, Planned};

impl Invocation<'_> {
    /// DEL from the cache (or, without one, from the conf), every attachment
    /// in reverse, past failures; the cache goes only when all succeeded.
    pub fn del(&self) -> Result<(), CniError> {
        if let Some(f) = &self.conf.readiness_indicator_file {
            if !f.exists() {
                tracing::warn!(file = %f.display(), "readinessindicatorfile is missing; deleting anyway");
            }
        }
        match cache::read(&self.conf.cni_dir, &self.env.container_id, &self.env.ifname)? {
            Some(loaded) => self.del_cached(loaded),
            None => match self.plan_teardown() {
                Ok(planned) => {
                    let file = self.new_cache(planned.into_iter().map(|p| p.cached).collect());
                    self.del_cached(Loaded::Current(file))
                }
                // ADD writes the cache before its first delegate runs, so no
                // cache means none of ours ran: failing here would only keep
                // the runtime from deleting the pod.
                Err(e) => {
                    tracing::warn!(pod = %self.pod(), error = %e, "no cache and the networks cannot be resolved; nothing to delete");
                    // What a killed ADD may have left before its first write.
                    cache::remove(&self.conf.cni_dir, &self.env.container_id)
                }
            },
        }
    }

    /// The attachments to DEL when ADD left no cache: from the API when it
    /// answers at once (the pod's annotation networks too), else from the
    /// conf alone. Teardown never waits on the API server.
    fn plan_teardown(&self) -> Result<Vec<Planned>, CniError> {
        let ctx = match PodContext::connect_for_teardown(self.cluster, self.conf, self.env) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = %self.pod(), error = %e, "API server unavailable; deleting the networks of the conf only");
                None
            }
        };
        tracing::info!(pod = %self.pod(), from_api = ctx.is_some(), "no cache; planning the DEL");
        self.plan(ctx.as_ref(), DeviceIds::Skip)
    }

    pub(super) fn del_cached(&self, loaded: Loaded) -> Result<(), CniError> {
        let cache_path = cache::path(&self.conf.cni_dir, &self.env.container_id);
        let path = self.search_path();
        let mut errors = Vec::new();
        for d in loaded.file().delegates.iter().rev() {
            let outcome = d.network(&cache_path).and_then(|net| {
                let target = self.target(d, &path, &self.env.netns);
                self.run_logged(Command::Del, d, || {
                    chain::del(self.runner, &net, &target, d.result.as_ref())
                })
            });
            match outcome {
                Ok(()) => devices::remove_info_file(&d.capability_args),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            cache::remove(&self.conf.cni_dir, &self.env.container_id)?;
            if let Loaded::Legacy(_, files) = &loaded {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
            }
            return Ok(());
        }
        Err(combine(errors).context(format!("[{}]: DEL", self.pod())))
    }
}

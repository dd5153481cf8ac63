//! GC: stale cached attachments deleted, then every network told what stays.

use serde_json::Map;

use crate::cache::{self, CacheFile};
use crate::cni::{CniEnv, CniError, Code};
use crate::config::{Attachment, NetworkConfig};
use crate::delegate::chain::{self, ChainError, Target};

use super::{combine, DeviceIds, Invocation};

impl Invocation<'_> {
    /// GC: DEL the cached attachments the runtime no longer lists, then send
    /// every network the attachments that stay valid.
    pub fn gc(&self) -> Result<(), CniError> {
        let valid = self.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                "GC: the conf has no \"cni.dev/valid-attachments\" list",
            )
        })?;
        let cni_dir = &self.conf.cni_dir;
        let path = self.search_path();
        let mut errors = Vec::new();
        let mut kept: Vec<CacheFile> = Vec::new();
        for id in cache::list(cni_dir)? {
            let loaded = match cache::read(cni_dir, &id, "eth0") {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let f = loaded.file();
            if valid
                .iter()
                .any(|a| a.container_id == f.container_id && a.ifname == f.ifname)
            {
                kept.push(f.clone());
                continue;
            }
            tracing::info!(container = %id, "GC: deleting attachments no longer valid");
            let env = CniEnv {
                container_id: id.clone(),
                netns: f.netns.clone(),
                ifname: f.ifname.clone(),
                ..self.env.clone()
            };
            let stale = Invocation { env: &env, ..*self };
            if let Err(e) = stale.del_cached(loaded) {
                errors.push(e);
            }
        }
        let mut nets: Vec<NetworkConfig> = self
            .plan(None, DeviceIds::Skip)?
            .into_iter()
            .map(|p| p.net)
            .collect();
        for f in &kept {
            for d in &f.delegates {
                if let Ok(net) = d.network(&cache::path(cni_dir, &f.container_id)) {
                    if !nets
                        .iter()
                        .any(|n| n.name == net.name && n.bytes == net.bytes)
                    {
                        nets.push(net);
                    }
                }
            }
        }
        let none = Map::new();
        for net in nets.iter().filter(|n| chain::has_status_and_gc(n)) {
            let still: Vec<Attachment> = kept
                .iter()
                .flat_map(|f| {
                    f.delegates
                        .iter()
                        .filter(|d| d.network_name == net.name)
                        .map(|d| Attachment {
                            container_id: f.container_id.clone(),
                            ifname: d.ifname.clone(),
                        })
                })
                .collect();
            let target = Target {
                container_id: "",
                netns: "",
                ifname: "",
                cni_args: "",
                capability_args: &none,
                path: &path,
            };
            errors.extend(
                chain::gc(self.runner, net, &target, &still)
                    .into_iter()
                    .map(ChainError::into_cni),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(combine(errors).context("GC"))
        }
    }
}

//! API credentials for what the daemon starts outside its own pod. A native
//! plugin whose IPAM is a wasm module (bridge with whereabouts, say) execs
//! `<binDir>/multus`, chrooted into the host's root (`chrootDir`), where the
//! pod's service-account files do not exist: that IPAM had no credentials
//! at all (found on a real node). In a pod, the daemon keeps a copy of its
//! token and CA in `<socketDir>/api/` (0700; the socket dir is the same path
//! on the host and in the pod) and a kubeconfig reading them, and names it
//! as the multus conf's `kubeconfig`: the in-process modules, the chrooted
//! IPAM and the shim's own DEL (which runs on the host) all use it.

use std::path::{Path, PathBuf};

use multus::fsutil::write_atomic;
use multus::k8s::kubeconfig::{render, server, ENV_HOST, ENV_PORT};

/// Where the kubelet mounts a pod's service account.
pub const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub struct ApiAccess {
    dir: PathBuf,
    service_account: PathBuf,
}

impl ApiAccess {
    /// Writes `dir/{ca.crt,token,kubeconfig}` from `service_account` and the
    /// in-cluster variables of `env`.
    pub fn prepare(
        dir: &Path,
        service_account: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let server = server(env(ENV_HOST), env(ENV_PORT))?;
        let read = |name: &str| {
            let p = service_account.join(name);
            std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
        };
        let ca = read("ca.crt")?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let access = Self {
            dir: dir.to_path_buf(),
            service_account: service_account.to_path_buf(),
        };
        access.refresh()?;
        let kubeconfig = render(&server, &ca, &access.dir.join("token"));
        write_atomic(&access.kubeconfig(), &kubeconfig, 0o600)
            .map_err(|e| format!("{}: {e}", access.kubeconfig().display()))?;
        Ok(access)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Copies the token again when the kubelet has rotated it; whether it
    /// changed.
    pub fn refresh(&self) -> Result<bool, String> {
        let from = self.service_account.join("token");
        let token = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
        let to = self.dir.join("token");
        if std::fs::read(&to).is_ok_and(|have| have == token) {
            return Ok(false);
        }
        write_atomic(&to, &token, 0o600).map_err(|e| format!("{}: {e}", to.display()))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_reading_a_fresh_copy_of_the_token() {
        let sa = tempfile::tempdir().unwrap();
        std::fs::write(sa.path().join("token"), "t1").unwrap();
        std::fs::write(sa.path().join("ca.crt"), "ca").unwrap();
        let run = tempfile::tempdir().unwrap();
        let dir = run.path().join("api");
        let env = |k: &str| match k {
            ENV_HOST => Some("10.96.0.1".to_string()),
            ENV_PORT => Some("443".to_string()),
            _ => None,
        };
        let a = ApiAccess::prepare(&dir, sa.path(), env).unwrap();
        let kc: kube::config::Kubeconfig =
            serde_json::from_slice(&std::fs::read(a.kubeconfig()).unwrap()).unwrap();
        let token_file = dir.join("token");
        assert_eq!(
            kc.auth_infos[0]
                .auth_info
                .as_ref()
                .unwrap()
                .token_file
                .as_deref(),
            Some(token_file.to_str().unwrap())
        );
        assert_eq!(std::fs::read_to_string(&token_file).unwrap(), "t1");
        assert!(!a.refresh().unwrap());
        std::fs::write(sa.path().join("token"), "t2").unwrap();
        assert!(a.refresh().unwrap());
        assert_eq!(std::fs::read_to_string(&token_file).unwrap(), "t2");
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
                & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&token_file), 0o600);
        let e = ApiAccess::prepare(&dir, sa.path(), |_| None).err().unwrap();
        assert!(e.contains(ENV_HOST), "{e}");
    }
}

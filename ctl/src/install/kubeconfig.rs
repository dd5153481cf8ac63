//! The kubeconfig multus runs with, made from the installer pod's service
//! account: the CA embedded, the token by `tokenFile` (a host copy the
//! installer keeps fresh), so a rotated bound token never strands the node
//! with an expired one (upstream multus #852).

use std::path::{Path, PathBuf};
use std::time::Duration;

use multus::k8s::client::Kube;

use super::InstallError;
pub use multus::k8s::kubeconfig::{ENV_HOST, ENV_PORT};

/// What the kubelet mounts into a pod for its service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub token: Vec<u8>,
    pub ca: Vec<u8>,
}

impl ServiceAccount {
    pub fn token_path(dir: &Path) -> PathBuf {
        dir.join("token")
    }

    pub fn read(dir: &Path) -> Result<Self, InstallError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| InstallError::io("reading the service account's", &p, e))
        };
        let token = read("token")?;
        if token.iter().all(u8::is_ascii_whitespace) {
            return Err(InstallError::Invalid(format!(
                "{}: the service-account token is empty",
                Self::token_path(dir).display()
            )));
        }
        Ok(Self {
            token,
            ca: read("ca.crt")?,
        })
    }
}

/// An API client as the installer pod's service account, with the
/// kubeconfig it reads (again on a 401) kept for as long as it lives.
pub struct SaClient {
    pub kube: Kube,
    _kubeconfig: tempfile::NamedTempFile,
}

impl ServiceAccount {
    /// A client of `server` with the pod's own token file, so a rotated
    /// token is read on every request; `timeout` bounds each request.
    pub fn client(dir: &Path, server: &str, timeout: Duration) -> Result<SaClient, InstallError> {
        let sa = Self::read(dir)?;
        let mut tmp = tempfile::NamedTempFile::new()
            .map_err(|e| InstallError::io("creating a temp file in", &std::env::temp_dir(), e))?;
        let text = render(server, &sa.ca, &Self::token_path(dir));
        std::io::Write::write_all(&mut tmp, &text)
            .map_err(|e| InstallError::io("writing", tmp.path(), e))?;
        Ok(SaClient {
            kube: Kube::new(tmp.path(), timeout)?,
            _kubeconfig: tmp,
        })
    }
}

/// `https://host:port` from the in-cluster variables (brackets for IPv6).
pub fn server(host: Option<String>, port: Option<String>) -> Result<String, InstallError> {
    multus::k8s::kubeconfig::server(host, port).map_err(|why| {
        InstallError::Invalid(format!(
            "{why}: the installer needs the in-cluster API address (run it in a pod, or set --kubeconfig)"
        ))
    })
}

pub use multus::k8s::kubeconfig::render;

#[cfg(test)]
mod tests {
    use super::*;

    /// The address rules are the runtime's; the installer's error says
    /// what to do.
    #[test]
    fn a_missing_address_says_how_to_run_the_installer() {
        let e = server(None, Some("443".into())).unwrap_err().to_string();
        assert!(e.contains(ENV_HOST) && e.contains("--kubeconfig"), "{e}");
    }

    #[test]
    fn kube_rs_reads_what_we_render() {
        let r = render(
            "https://10.96.0.1:443",
            b"-----BEGIN CERTIFICATE-----\n",
            Path::new("/etc/cni/net.d/multus.d/token"),
        );
        let kc: kube::config::Kubeconfig = serde_json::from_slice(&r).unwrap();
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(
            user.token_file.as_deref(),
            Some("/etc/cni/net.d/multus.d/token")
        );
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.96.0.1:443"));
        assert!(cluster.certificate_authority_data.is_some());
        assert_eq!(kc.current_context.as_deref(), Some("multus-context"));
    }

    #[test]
    fn service_account_files_are_named_when_missing_or_empty() {
        let d = tempfile::tempdir().unwrap();
        let e = ServiceAccount::read(d.path()).unwrap_err().to_string();
        assert!(
            e.contains(&d.path().join("token").display().to_string()),
            "{e}"
        );
        std::fs::write(d.path().join("token"), "\n").unwrap();
        std::fs::write(d.path().join("ca.crt"), "ca").unwrap();
        assert!(ServiceAccount::read(d.path())
            .unwrap_err()
            .to_string()
            .contains("empty"));
        std::fs::write(d.path().join("token"), "tok").unwrap();
        assert_eq!(ServiceAccount::read(d.path()).unwrap().token, b"tok");
    }
}

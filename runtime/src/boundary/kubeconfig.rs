//! The credentials of a module's cluster calls. A config never chooses
//! them: a kubeconfig a NAD names (`ipam.kubernetes.kubeconfig`) is used
//! only when it is multus's own or on the admin's `kubeconfigAllowlist`;
//! one the admin's whereabouts flat file names is the admin's. Whichever
//! it is, it is read as a config-named file ([`super::file`]) and never
//! runs a command: `exec` and `auth-provider` users are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::Kubeconfig;

use super::bounds::{list, split_beneath};
use super::file::{self, Roots};
use super::{Bounds, Refused};

/// The config key a NAD names a kubeconfig with (whereabouts').
pub const KEY: &str = "ipam.kubernetes.kubeconfig";

/// A kubeconfig approved for a module's cluster calls, and where it may be
/// read from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleKubeconfig {
    pub path: PathBuf,
    roots: Vec<PathBuf>,
    roots_key: &'static str,
}

impl ModuleKubeconfig {
    fn exact(path: &Path, roots_key: &'static str) -> Self {
        Self {
            path: path.to_path_buf(),
            roots: vec![path.to_path_buf()],
            roots_key,
        }
    }
}

/// Chooses the kubeconfig: `named`, what the config itself says (before
/// any flat file's defaults); `flat`, what the admin's flat file says;
/// `own`, multus's `kubeconfig`. `None`: no kubeconfig (in a pod, its
/// service account).
pub fn choose(
    named: Option<&str>,
    flat: Option<&str>,
    bounds: &Bounds,
    own: Option<&Path>,
) -> Result<Option<ModuleKubeconfig>, Refused> {
    if let Some(named) = named.filter(|s| !s.is_empty()) {
        let path = Path::new(named);
        if own == Some(path) {
            return Ok(Some(ModuleKubeconfig::exact(path, "kubeconfig")));
        }
        let allowed = bounds.kubeconfig_allowlist.iter().any(|r| r == path)
            || split_beneath(&bounds.kubeconfig_allowlist, path).is_some_and(|(_, rel)| {
                multus_host_functions::beneath::plain_components(rel).is_ok()
            });
        if path.is_absolute() && allowed {
            return Ok(Some(ModuleKubeconfig {
                path: path.to_path_buf(),
                roots: bounds.kubeconfig_allowlist.clone(),
                roots_key: "kubeconfigAllowlist",
            }));
        }
        return Err(Refused::new(
            KEY,
            format!(
                "{}: a config does not choose credentials; it may name multus's own kubeconfig ({}) or one on kubeconfigAllowlist ({}), which the admin sets in the multus conf",
                multus_host_functions::text::quoted(named),
                own.map_or("none".into(), |p| p.display().to_string()),
                list(&bounds.kubeconfig_allowlist)
            ),
        ));
    }
    if let Some(flat) = flat.filter(|s| !s.is_empty()) {
        return Ok(Some(ModuleKubeconfig::exact(
            Path::new(flat),
            "the whereabouts flat file",
        )));
    }
    Ok(own.map(|p| ModuleKubeconfig::exact(p, "kubeconfig")))
}

/// Reads and parses `kc` within `timeout`, refusing any user that would run
/// a command; relative file references become relative to its directory,
/// as client-go reads them.
pub fn load(kc: &ModuleKubeconfig, timeout: Duration) -> Result<Kubeconfig, Refused> {
    let roots = Roots {
        roots: &kc.roots,
        key: kc.roots_key,
    };
    let bytes = file::read(&roots, &kc.path, KEY, timeout)?;
    let refused = |why: String| Refused::new(KEY, format!("{}: {why}", kc.path.display()));
    let text = String::from_utf8(bytes).map_err(|_| refused("not UTF-8".into()))?;
    let mut config = Kubeconfig::from_yaml(&text).map_err(|e| refused(e.to_string()))?;
    let dir = kc.path.parent().unwrap_or(Path::new("/"));
    let absolute = |p: &mut Option<String>| {
        if let Some(s) = p.as_mut().filter(|s| !Path::new(s.as_str()).is_absolute()) {
            *s = dir.join(&*s).display().to_string();
        }
    };
    for named in &mut config.auth_infos {
        let Some(user) = named.auth_info.as_mut() else {
            continue;
        };
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(refused(format!(
                "user {:?} runs a command (exec or auth-provider), which kubeconfigs read for a module never do",
                named.name
            )));
        }
        absolute(&mut user.client_certificate);
        absolute(&mut user.client_key);
        absolute(&mut user.token_file);
    }
    for named in &mut config.clusters {
        if let Some(cluster) = named.cluster.as_mut() {
            absolute(&mut cluster.certificate_authority);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_never_chooses_credentials() {
        let own = Path::new("/etc/cni/net.d/multus.d/multus.kubeconfig");
        let mut b = Bounds::default();
        let c = |named: Option<&str>, flat: Option<&str>, b: &Bounds| {
            choose(named, flat, b, Some(own)).map(|k| k.map(|k| k.path))
        };
        assert_eq!(c(None, None, &b).unwrap(), Some(own.to_path_buf()));
        assert_eq!(
            c(Some(own.to_str().unwrap()), None, &b).unwrap(),
            Some(own.to_path_buf())
        );
        let wa = "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig";
        let e = c(Some(wa), None, &b).unwrap_err();
        assert!(e.key == KEY && e.msg.contains("kubeconfigAllowlist"), "{e}");
        assert_eq!(
            c(None, Some(wa), &b).unwrap(),
            Some(PathBuf::from(wa)),
            "the admin's flat file"
        );
        assert!(
            c(Some("/var/lib/kubelet/pods/x/evil"), Some(wa), &b).is_err(),
            "the config's own wins, and is refused"
        );
        b.kubeconfig_allowlist = vec![PathBuf::from("/etc/cni/net.d/whereabouts.d")];
        assert_eq!(c(Some(wa), None, &b).unwrap(), Some(PathBuf::from(wa)));
        assert!(c(Some("relative.kubeconfig"), None, &b).is_err());
        assert!(c(Some("/etc/cni/net.d/whereabouts.d/../../shadow"), None, &b).is_err());
    }

    #[test]
    fn no_command_ever_runs() {
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, user: serde_json::Value| {
            let p = d.path().join(name);
            std::fs::write(
                &p,
                serde_json::json!({"apiVersion": "v1", "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "certificate-authority": "ca.crt"}}],
                    "users": [{"name": "u", "user": user}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x"})
                .to_string(),
            )
            .unwrap();
            ModuleKubeconfig::exact(&p, "kubeconfig")
        };
        let t = Duration::from_secs(5);
        let ok = load(&write("ok", serde_json::json!({"tokenFile": "token"})), t).unwrap();
        let dir = d.path().display();
        assert_eq!(
            ok.auth_infos[0].auth_info.as_ref().unwrap().token_file,
            Some(format!("{dir}/token"))
        );
        assert_eq!(
            ok.clusters[0]
                .cluster
                .as_ref()
                .unwrap()
                .certificate_authority,
            Some(format!("{dir}/ca.crt"))
        );
        let exec = serde_json::json!({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/touch", "args": ["/tmp/pwned"]}});
        assert!(load(&write("exec", exec), t)
            .unwrap_err()
            .msg
            .contains("runs a command"));
        let provider = serde_json::json!({"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}});
        assert!(load(&write("ap", provider), t)
            .unwrap_err()
            .msg
            .contains("runs a command"));
        let dev = ModuleKubeconfig::exact(Path::new("/dev/zero"), "kubeconfig");
        assert!(load(&dev, t)
            .unwrap_err()
            .msg
            .contains("not a regular file"));
    }
}

//! The cluster kit's real kube-apiserver + etcd (`../shared/cluster-kit`,
//! built once per machine), started fresh by its `k8s/up.sh` in the
//! caller's network namespace (so its loopback stays the caller's own) and
//! stopped on drop: what the in-process API server hides (TLS,
//! authentication, admission, etcd) for the benches and the fleet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use multus::k8s::client::Kube;

/// Where the kit is unless told: `MULTUS_KIT`, else `/var/tmp/kit`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("MULTUS_KIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/kit".into())
}

/// Whether `kit` is built (its `k8s/up.sh` and apiserver are there).
pub fn built(kit: &Path) -> bool {
    kit.join("k8s/up.sh").exists() && kit.join("k8s/bin/kube-apiserver").exists()
}

/// Requests, conflicts and response bytes (watches excluded) of some
/// resources, from the API server's `apiserver_request_total` and
/// `apiserver_response_sizes_sum`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub requests: f64,
    pub conflicts: f64,
    pub bytes: f64,
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            requests: self.requests + o.requests,
            conflicts: self.conflicts + o.conflicts,
            bytes: self.bytes + o.bytes,
        }
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            requests: self.requests - o.requests,
            conflicts: self.conflicts - o.conflicts,
            bytes: self.bytes - o.bytes,
        }
    }
}

/// The value of `key` in a metric line's labels.
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let at = labels.find(&format!("{key}=\""))? + key.len() + 2;
    labels[at..].split('"').next()
}

/// The counts of `resources` in a metrics text.
pub fn counts(metrics: &str, resources: &[&str]) -> Counts {
    let mut c = Counts::default();
    for line in metrics.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        if !label(labels, "resource").is_some_and(|r| resources.contains(&r))
            || label(labels, "verb") == Some("WATCH")
        {
            continue;
        }
        match name {
            "apiserver_request_total" => {
                c.requests += value;
                if label(labels, "code") == Some("409") {
                    c.conflicts += value;
                }
            }
            "apiserver_response_sizes_sum" => c.bytes += value,
            _ => {}
        }
    }
    c
}

pub struct Kit {
    pub k8s: PathBuf,
}

impl Kit {
    /// Starts etcd and kube-apiserver fresh, seeded (the NAD CRD,
    /// multus's RBAC, Node node1).
    pub fn start(kit: &Path) -> Result<Self> {
        let k8s = kit.join("k8s");
        let up = k8s.join("up.sh");
        if !built(kit) {
            bail!(
                "no cluster kit at {} (built once per machine: ../shared/cluster-kit/README.md)",
                kit.display()
            );
        }
        let out = Command::new(&up)
            .args(["--fresh", "--seed"])
            .output()
            .with_context(|| format!("running {}", up.display()))?;
        if !out.status.success() {
            bail!(
                "{} --fresh --seed failed: {}{}",
                up.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self { k8s })
    }

    /// The cluster admin's kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.k8s.join("admin.kubeconfig")
    }

    /// A client as the cluster admin.
    pub fn admin(&self) -> Result<Kube> {
        Kube::new(&self.admin_kubeconfig(), Duration::from_secs(30))
            .context("the kit's admin kubeconfig")
    }

    /// The kubeconfig of the user `multus` (a token; upstream's RBAC).
    pub fn multus_kubeconfig(&self) -> PathBuf {
        self.k8s.join("multus.kubeconfig")
    }

    /// `kubectl` of the kit, as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.k8s.join("bin/kubectl"))
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(args)
            .output()
            .context("running the kit's kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies the CRDs of `file` and waits, at most `within` (kubectl's
    /// duration), until `crds` (their `crd/<name>`) are established.
    pub fn apply_crds(&self, file: &Path, crds: &[&str], within: &str) -> Result<()> {
        self.kubectl(&["apply", "-f", &file.display().to_string()])?;
        let timeout = format!("--timeout={within}");
        let mut wait = vec!["wait", "--for", "condition=established", &timeout];
        let names: Vec<String> = crds.iter().map(|c| format!("crd/{c}")).collect();
        wait.extend(names.iter().map(String::as_str));
        self.kubectl(&wait).map(drop)
    }

    /// The API server's counts of `resources` so far.
    pub fn counts(&self, resources: &[&str]) -> Result<Counts> {
        Ok(counts(
            &self.kubectl(&["get", "--raw", "/metrics"])?,
            resources,
        ))
    }

    /// The counts of each of `resources`, from one reading.
    pub fn counts_each(&self, resources: &[&str]) -> Result<Vec<Counts>> {
        let metrics = self.kubectl(&["get", "--raw", "/metrics"])?;
        Ok(resources.iter().map(|r| counts(&metrics, &[r])).collect())
    }

    /// The pid of one of the kit's servers (`etcd`, `kube-apiserver`).
    pub fn pid(&self, server: &str) -> Option<u32> {
        std::fs::read_to_string(self.k8s.join(format!("run/{server}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        let _ = Command::new(self.k8s.join("down.sh")).output();
    }
}

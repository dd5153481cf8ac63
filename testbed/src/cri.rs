//! Test-only: a private containerd with its CRI plugin on, driven over its
//! socket as the kubelet drives it (RunPodSandbox, StopPodSandbox,
//! RemovePodSandbox through the CRI's protobuf API), with a pause image
//! assembled here and a CNI conf dir of the test's: the real container
//! runtime calling multus, with the environment and call sequence it really
//! uses.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{in_netns, Netns};

pub mod proto {
    tonic::include_proto!("runtime.v1");
}

use proto::runtime_service_client::RuntimeServiceClient;

/// The pause image the sandboxes run (its own name, so the node's real
/// images are never touched).
pub const PAUSE_IMAGE: &str = "localhost/multus-test-pause:1";

fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stores `file` as a blob of `layout`; its digest and size.
fn blob(layout: &Path, file: &Path) -> io::Result<(String, u64)> {
    let digest = crate::sha256_file(file)?;
    let size = std::fs::metadata(file)?.len();
    std::fs::rename(file, layout.join("blobs/sha256").join(&digest))?;
    Ok((digest, size))
}

/// An OCI archive of one uncompressed layer holding `/bin/sleep` and the
/// libraries it links (at their paths), whose entrypoint sleeps for ever:
/// all a pod sandbox's pause container has to do.
pub fn pause_image(dir: &Path, name: &str) -> io::Result<PathBuf> {
    let rootfs = dir.join("pause-rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    let sleep = Path::new("/bin/sleep");
    std::fs::copy(sleep, rootfs.join("bin/sleep"))?;
    let ldd = run(Command::new("ldd").arg(sleep))?;
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let to = rootfs.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("a library path has a parent"))?;
        std::fs::copy(lib, to)?;
    }
    let layout = dir.join("pause-layout");
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    let tar = |out: &Path, from: &Path| {
        run(Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
            ])
            .arg("-C")
            .arg(from)
            .arg("-cf")
            .arg(out)
            .arg("."))
    };
    let layer = dir.join("pause-layer.tar");
    tar(&layer, &rootfs)?;
    let diff_id = crate::sha256_file(&layer)?;
    let (layer_digest, layer_size) = blob(&layout, &layer)?;
    let config = dir.join("pause-config.json");
    std::fs::write(
        &config,
        serde_json::json!({"architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/sleep", "infinity"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]}})
        .to_string(),
    )?;
    let (config_digest, config_size) = blob(&layout, &config)?;
    let manifest = dir.join("pause-manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{layer_digest}"), "size": layer_size}]})
        .to_string(),
    )?;
    let (manifest_digest, manifest_size) = blob(&layout, &manifest)?;
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                "annotations": {"io.containerd.image.name": name}}]})
        .to_string(),
    )?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let archive = dir.join("pause.oci.tar");
    tar(&archive, &layout)?;
    Ok(archive)
}

/// The value of `key=` in a logrus text line (quoted or bare).
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line
        .find(&format!(" {key}="))
        .map(|i| i + key.len() + 2)
        .or_else(|| {
            line.starts_with(&format!("{key}="))
                .then_some(key.len() + 1)
        })?;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(q) => q.find('"').map(|end| &q[..end]),
        None => Some(rest.split(' ').next().unwrap_or(rest)),
    }
}

/// Pairs each sandbox's `begin cni setup` with its `cni result` line.
pub fn cni_setup_times(log: &str) -> std::collections::HashMap<String, Duration> {
    let mut begun = std::collections::HashMap::new();
    let mut took = std::collections::HashMap::new();
    for line in log.lines() {
        let begin = line.contains("msg=\"begin cni setup\"");
        if !begin && !line.contains("msg=\"cni result:") {
            continue;
        }
        // The result's JSON is in the quoted msg: the id is the last field.
        let id = line
            .rsplit(" podsandboxid=")
            .next()
            .filter(|_| line.contains(" podsandboxid="));
        let at = log_field(line, "time").and_then(|t| humantime::parse_rfc3339(t).ok());
        let (Some(id), Some(at)) = (id, at) else {
            continue;
        };
        let id = id
            .split(' ')
            .next()
            .unwrap_or(id)
            .trim_matches('"')
            .to_string();
        if begin {
            begun.insert(id, at);
        } else if let Some(start) = begun.remove(&id) {
            took.insert(id, at.duration_since(start).unwrap_or_default());
        }
    }
    took
}

/// A private containerd (own root, state and socket), CRI on, its CNI
/// plugins in `cni_bin` with their confs in `cni_conf`, run in `node`'s
/// netns with `env` added (a node's proxy variables, say) and logging at
/// `log_level` (`debug` has its CNI setup lines); stopped on drop.
pub struct Containerd {
    child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Containerd {
    pub fn start(
        dir: &Path,
        node: &Netns,
        cni_bin: &Path,
        cni_conf: &Path,
        env: &[(&str, &str)],
        log_level: &str,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("containerd.sock");
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = {root:?}
state = {state:?}
[grpc]
  address = {socket:?}
[plugins."io.containerd.internal.v1.opt"]
  path = {opt:?}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {PAUSE_IMAGE:?}
  enable_selinux = false
  # Without CAP_SYS_RESOURCE (a machine that is itself a container) runc
  # cannot give the sandbox its negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {runc:?}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {bin:?}
    conf_dir = {conf:?}
"#,
                root = dir.join("root"),
                state = dir.join("state"),
                opt = dir.join("root/opt"),
                runc = dir.join("state/runc"),
                bin = cni_bin,
                conf = cni_conf,
            ),
        )?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&config)
            .args(["--log-level", log_level])
            // Timestamps in UTC, as `cni_setup_times` reads them.
            .env("TZ", "UTC")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log"))?);
        let _ns = in_netns(&mut cmd, node)?;
        let child = cmd.spawn()?;
        let c = Self {
            child,
            dir: dir.to_path_buf(),
            socket,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while c.ctr(&["version"]).is_err() {
            if Instant::now() > until {
                return Err(io::Error::other(format!(
                    "containerd did not come up: {}",
                    c.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// containerd's own measure of each sandbox's CNI setup, from its debug
    /// log: `begin cni setup` to `cni result` of the same `podsandboxid`.
    pub fn cni_setup_times(&self) -> std::collections::HashMap<String, Duration> {
        cni_setup_times(&self.log())
    }

    /// `ctr` in the CRI's namespace (`k8s.io`).
    pub fn ctr(&self, args: &[&str]) -> io::Result<String> {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args))
    }

    /// The pause image, assembled and imported.
    pub fn import_pause(&self) -> io::Result<()> {
        let archive = pause_image(&self.dir, PAUSE_IMAGE)?;
        self.ctr(&["images", "import", archive.to_str().expect("a UTF-8 path")])
            .map(drop)
    }

    /// A CRI client over the socket, with its own runtime.
    pub fn cri(&self) -> io::Result<Cri> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let path = self.socket.clone();
        let channel = rt
            .block_on(
                Endpoint::from_static("http://[::1]:0").connect_with_connector(tower::service_fn(
                    move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    },
                )),
            )
            .map_err(io::Error::other)?;
        Ok(Cri {
            rt,
            client: RuntimeServiceClient::new(channel),
        })
    }
}

/// The kubelet's side of the CRI, blocking.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    /// RunPodSandbox of pod `namespace/name` (UID `uid`), with the pod
    /// network (the CNI ADD); its sandbox ID.
    pub fn run_pod(
        &mut self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<String, tonic::Status> {
        let config = proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            linux: Some(proto::LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(proto::NamespaceOption {
                        network: proto::NamespaceMode::Pod as i32,
                        pid: proto::NamespaceMode::Pod as i32,
                        ipc: proto::NamespaceMode::Pod as i32,
                    }),
                    privileged: false,
                }),
            }),
            ..Default::default()
        };
        let req = proto::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let client = &mut self.client;
        self.rt
            .block_on(client.run_pod_sandbox(req))
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    /// StopPodSandbox (the CNI DEL, then the netns removed).
    pub fn stop_pod(&mut self, id: &str) -> Result<(), tonic::Status> {
        let client = &mut self.client;
        self.rt
            .block_on(client.stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }))
            .map(drop)
    }

    /// RemovePodSandbox (the CNI DEL again, the netns already gone).
    pub fn remove_pod(&mut self, id: &str) -> Result<(), tonic::Status> {
        let client = &mut self.client;
        self.rt
            .block_on(client.remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_setup_is_read_from_containerds_debug_lines() {
        let log = concat!(
            "time=\"2026-12-04T19:00:00.100000000Z\" level=debug msg=\"begin cni setup\" podsandboxid=abc\n",
            "time=\"2026-12-04T19:00:00.110000000Z\" level=debug msg=\"begin cni setup\" podsandboxid=def\n",
            "time=\"2026-12-04T19:00:00.130500000Z\" level=debug msg=\"cni result: {\\\"Interfaces\\\":{}}\" podsandboxid=abc\n",
            "time=\"2026-12-04T19:00:00.200000000Z\" level=info msg=\"other\" podsandboxid=def\n",
        );
        let t = cni_setup_times(log);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t["abc"], Duration::from_micros(30_500));
    }
}

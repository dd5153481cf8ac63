//! `scripts/image`: the OCI archive made from the built binaries is a valid
//! image layout (digests and sizes check out), its rootfs runs `multusctl`
//! and `multus` with nothing from the host, and a real containerd imports
//! and runs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

const MULTUSCTL: &str = env!("CARGO_BIN_EXE_multusctl");

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds the archive from this build's binaries.
fn build(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let archive = dir.join("multus-wasm.oci.tar");
    run(Command::new(repo.join("scripts/image"))
        .arg("--bin-dir")
        .arg(Path::new(MULTUSCTL).parent().unwrap())
        .arg("--plugins")
        .arg(repo.join("target/plugins"))
        .arg("--out")
        .arg(&archive)
        .args(["--name", "localhost/multus-wasm:test"]));
    archive
}

/// A blob of the layout, checked against its descriptor.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        format!("{:x}", Sha256::digest(&bytes)),
        hex,
        "digest of {digest}"
    );
    assert_eq!(
        bytes.len() as u64,
        desc["size"].as_u64().unwrap(),
        "size of {digest}"
    );
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn archive_is_an_oci_layout_whose_rootfs_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let archive = build(dir.path());
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout));

    assert_eq!(
        json(&std::fs::read(layout.join("oci-layout")).unwrap())["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let desc = &index["manifests"][0];
    assert_eq!(
        desc["annotations"]["io.containerd.image.name"],
        "localhost/multus-wasm:test"
    );
    let manifest = json(&blob(&layout, desc));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = json(&blob(&layout, &manifest["config"]));
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/bin/multusctl");
    assert_eq!(config["os"], "linux");

    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let gz = dir.path().join("layer.tar.gz");
        std::fs::write(&gz, blob(&layout, layer)).unwrap();
        let tar = run(Command::new("gzip").arg("-dc").arg(&gz)).stdout;
        assert_eq!(
            format!("sha256:{:x}", Sha256::digest(&tar)),
            diff_id.as_str().unwrap()
        );
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&gz)
            .arg("-C")
            .arg(&rootfs));
    }
    for p in multus_testbed::node::SHIPPED_PLUGINS {
        assert!(
            rootfs
                .join(format!("usr/share/multus/plugins/{p}.wasm"))
                .is_file(),
            "{p}"
        );
    }

    // Nothing from the host: chroot into the unpacked rootfs.
    let out = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/usr/bin/multusctl", "--version"]));
    assert!(
        stdout(&out).starts_with("multusctl ") && stdout(&out).contains("multus:plugin@"),
        "{}",
        stdout(&out)
    );
    let out = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/usr/bin/multus", "-version"]));
    assert!(
        stdout(&out).starts_with("multus-wasm version:v"),
        "{}",
        stdout(&out)
    );
    // Thick mode's binaries, for the daemon DaemonSet and the installer.
    let out = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/usr/bin/multus-daemon", "-version"]));
    assert!(
        stdout(&out).starts_with("multus-daemon version:v"),
        "{}",
        stdout(&out)
    );
    assert!(rootfs.join("usr/bin/multus-shim").is_file());
    // The CA bundle plugin sync verifies HTTPS registries against: without
    // any, its registry client cannot even be built.
    let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.contains("BEGIN CERTIFICATE"));
    // The installer's default plugin dir is where the image keeps them.
    let out =
        run(Command::new("chroot")
            .arg(&rootfs)
            .args(["/usr/bin/multusctl", "install", "--help"]));
    assert!(stdout(&out).contains("--plugins"));

    containerd_imports_and_runs(dir.path(), &archive);
}

/// A private containerd (its own root, state and socket), stopped on drop.
struct Containerd {
    child: Child,
    socket: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Containerd {
    fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = {:?}\n",
                dir.join("root"),
                dir.join("state"),
                socket
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd (scripts/deps installs it)");
        let c = Self { child, socket };
        let until = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < until,
                "containerd did not come up: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }
}

fn containerd_imports_and_runs(dir: &Path, archive: &Path) {
    let c = Containerd::start(&dir.join("containerd"));
    let out = c.ctr(&["images", "import", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.ctr(&["images", "ls", "-q"]);
    assert_eq!(stdout(&out), "localhost/multus-wasm:test");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--net-host",
        "localhost/multus-wasm:test",
        "multusctl-version",
        "/usr/bin/multusctl",
        "--version",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).starts_with("multusctl "), "{}", stdout(&out));
}

//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF
//! distribution registry, v2.8) serving plain HTTP (or HTTPS with a
//! private CA's certificate) on loopback inside a
//! test's network namespace, with its storage in a temp dir, and with
//! htpasswd auth when asked for. Killed on drop.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{in_netns, Netns};

pub const BINARY: &str = "/usr/bin/docker-registry";
/// The one account of a registry with auth, and its password.
pub const USER: &str = "pusher";
pub const PASSWORD: &str = "plugin-pw";
/// bcrypt of [`PASSWORD`] at cost 4 (the registry checks it on every
/// request; cost 12 costs 0.6 s each).
const HASH: &str = "$2b$04$0KZHas8XkuUmiD8N0osMtenSocWI0WQLvGP9SmmUw90U.97HFSEla";

/// How a test registry asks for credentials.
pub enum Auth {
    None,
    /// htpasswd: Basic auth with [`USER`] and [`PASSWORD`].
    Basic,
    /// Token auth: a Bearer challenge sending clients to `realm` for a
    /// token (nothing serves it; what matters is where a client goes).
    TokenAt(String),
}

pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`, reachable inside the namespace only.
    pub host: String,
    /// Over HTTPS: the file of the private CA that signed its certificate.
    pub ca: Option<std::path::PathBuf>,
}

impl Registry {
    /// Starts one in `ns` on `port` (plain HTTP), asking for credentials
    /// as `auth` says.
    pub fn start(ns: &Netns, port: u16, auth: Auth) -> io::Result<Self> {
        Self::launch(ns, port, auth, false)
    }

    /// [`Registry::start`] over HTTPS, its certificate (for 127.0.0.1)
    /// signed by a private CA ([`Registry::ca`]).
    pub fn start_tls(ns: &Netns, port: u16, auth: Auth) -> io::Result<Self> {
        Self::launch(ns, port, auth, true)
    }

    fn launch(ns: &Netns, port: u16, auth: Auth, tls: bool) -> io::Result<Self> {
        if !Path::new(BINARY).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{BINARY}: not installed (scripts/deps installs docker-registry)"),
            ));
        }
        let dir = tempfile::tempdir()?;
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        let mut ca_file = None;
        if tls {
            let ca = crate::test_ca::TestCa::new("multus-test-registry-ca")?;
            let (cert, key) = ca.server("127.0.0.1")?;
            let (crt, pem, ca_path) = (
                dir.path().join("tls.crt"),
                dir.path().join("tls.key"),
                dir.path().join("ca.crt"),
            );
            std::fs::write(&crt, cert.pem())?;
            std::fs::write(&pem, key.serialize_pem())?;
            std::fs::write(&ca_path, ca.pem())?;
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                crt.display(),
                pem.display()
            );
            ca_file = Some(ca_path);
        }
        match auth {
            Auth::None => {}
            Auth::Basic => {
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{USER}:{HASH}\n"))?;
                config += &format!(
                    "auth:\n  htpasswd:\n    realm: multus-test\n    path: {}\n",
                    htpasswd.display()
                );
            }
            Auth::TokenAt(realm) => {
                // The registry wants a bundle to verify tokens against.
                let key =
                    rcgen::KeyPair::generate().map_err(|e| io::Error::other(e.to_string()))?;
                let cert = rcgen::CertificateParams::new(vec!["token-issuer".to_string()])
                    .and_then(|p| p.self_signed(&key))
                    .map_err(|e| io::Error::other(e.to_string()))?;
                let bundle = dir.path().join("token-ca.pem");
                std::fs::write(&bundle, cert.pem())?;
                config += &format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: multus-test\n    issuer: token-issuer\n    rootcertbundle: {}\n",
                    bundle.display()
                );
            }
        }
        let file = dir.path().join("config.yml");
        std::fs::write(&file, config)?;
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log"))?);
        let _ns = in_netns(&mut cmd, ns)?;
        let child = cmd.spawn()?;
        let reg = Self {
            child,
            _dir: dir,
            host,
            ca: ca_file,
        };
        // Listening: the namespace's loopback answers a connect.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let mut probe = Command::new("nsenter");
            probe
                .arg(format!("--net={}", ns.path().display()))
                .args(["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
                .stderr(Stdio::null());
            if probe.status()?.success() {
                return Ok(reg);
            }
            if Instant::now() > until {
                return Err(io::Error::other(format!(
                    "docker-registry not listening on {} within 10 s",
                    reg.host
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A docker config with this registry's credentials.
    pub fn docker_config(&self) -> String {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, self.host)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Plugins in an OCI registry (`spec.source.image`), as Kubewarden and
//! Spin ship wasm at scale: `multusctl plugin push --image` pushes the
//! module as an OCI artifact (one layer of the CNCF wasm media type, its
//! config), and each node's sync pulls that layer's blob by the object's
//! `sha256` from the image's repository: content-addressed, so a moved tag
//! changes nothing a node runs, and the bytes are checked as they stream.
//!
//! What the object names is bounded by the node's own flags, not by the
//! object: only registries the admin listed (`--registry`, or
//! `--insecure-registry` for plain HTTP) are contacted, so an object
//! cannot send nodes to an arbitrary host; credentials come from the
//! admin's docker config (a pull secret mounted into the sync,
//! `--registry-auth`) and go only to the registry they are for; a private
//! CA the admin names (`--registry-ca`) is trusted besides the system's; a
//! blob is read up to [`MAX_BLOB`].

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use base64::Engine as _;
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::manifest::{OciImageManifest, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// The most a node reads of one module's blob: a module and its compile
/// must fit the plugin-sync container's 128 MiB (a 64 MiB module peaked
/// at 202 MiB); the shipped ones are 75-250 KB.
pub const MAX_BLOB: usize = 8 << 20;

/// The longest one pull may take: a registry trickling a byte at a time
/// stays under the read timeout, and would stall every other plugin's
/// pass.
const PULL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// The registries this process may use, and how.
#[derive(Debug, Default, Clone)]
pub struct Registries {
    /// `host[:port]` reached over HTTPS.
    secure: Vec<String>,
    /// `host[:port]` reached over plain HTTP.
    insecure: Vec<String>,
    /// Credentials by registry host, from a docker config.
    auths: BTreeMap<String, (String, String)>,
    /// CA certificates (DER) trusted besides the system's, for registries
    /// whose certificates a private CA signed.
    roots: Vec<Vec<u8>>,
}

/// `auths` keys of a docker config name a registry as `host[:port]`, or
/// as a URL (`https://index.docker.io/v1/`).
fn registry_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    match k.split('/').next().unwrap_or_default() {
        // Docker Hub's key, as `docker login` writes it; references name
        // it docker.io.
        "index.docker.io" => "docker.io".into(),
        host => host.to_string(),
    }
}

impl Registries {
    /// `flag_auth` names the docker-config flag in errors.
    pub fn new(
        secure: &[String],
        insecure: &[String],
        auth_file: Option<&Path>,
        flag_auth: &str,
    ) -> Result<Self, String> {
        let mut auths = BTreeMap::new();
        // An optional pull secret not created mounts as no file: anonymous.
        if let Some(f) = auth_file.filter(|f| f.exists()) {
            let bytes =
                std::fs::read(f).map_err(|e| format!("{flag_auth} {}: {e}", f.display()))?;
            let cfg: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{flag_auth} {}: not a docker config: {e}", f.display()))?;
            for (key, entry) in cfg["auths"].as_object().into_iter().flatten() {
                let pair = match (entry["username"].as_str(), entry["password"].as_str()) {
                    (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                    _ => entry["auth"]
                        .as_str()
                        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                        .and_then(|d| String::from_utf8(d).ok())
                        .and_then(|s| {
                            s.split_once(':')
                                .map(|(u, p)| (u.to_string(), p.to_string()))
                        }),
                };
                let pair = pair.ok_or_else(|| {
                    format!(
                        "{flag_auth} {}: auths.{key}: neither username and password nor auth",
                        f.display()
                    )
                })?;
                auths.insert(registry_key(key), pair);
            }
        }
        Ok(Self {
            secure: secure.to_vec(),
            insecure: insecure.to_vec(),
            auths,
            roots: Vec::new(),
        })
    }

    /// Also trusts the CA certificates of the PEM file `file` (a bundle of
    /// one or more) for the HTTPS registries; `flag` names it in errors.
    pub fn with_ca(mut self, file: Option<&Path>, flag: &str) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let Some(file) = file else { return Ok(self) };
        let bad = |e: String| format!("{flag} {}: {e}", file.display());
        let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let der = cert.map_err(|e| bad(format!("not a PEM certificate: {e:?}")))?;
            // Parsed now, so a bad one is named here, not at the first pull.
            reqwest::Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
            self.roots.push(der.to_vec());
        }
        if self.roots.is_empty() {
            return Err(bad("no CERTIFICATE in it".into()));
        }
        Ok(self)
    }

    fn extra_roots(&self) -> Vec<reqwest::Certificate> {
        self.roots
            .iter()
            .filter_map(|d| reqwest::Certificate::from_der(d).ok())
            .collect()
    }

    /// For a push by an admin: `image`'s own registry, over plain HTTP
    /// when `insecure`.
    pub fn for_image(
        image: &str,
        insecure: bool,
        auth_file: Option<&Path>,
        flag_auth: &str,
    ) -> Result<Self, String> {
        let host = Reference::from_str(image)
            .map_err(|e| format!("image {image:?}: {e}"))?
            .registry()
            .to_string();
        let (secure, insecure) = match insecure {
            true => (vec![], vec![host]),
            false => (vec![host], vec![]),
        };
        Self::new(&secure, &insecure, auth_file, flag_auth)
    }

    /// Whether `host` (`host[:port]`) is one of this process's registries.
    fn listed(&self, host: &str) -> bool {
        self.secure.iter().chain(&self.insecure).any(|h| h == host)
    }

    /// Whether `host` is reached over plain HTTP.
    fn plain(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    /// `image` parsed, when its registry is one of this process's.
    fn reference(&self, image: &str) -> Result<Reference, String> {
        let r = Reference::from_str(image).map_err(|e| format!("image {image:?}: {e}"))?;
        let host = r.registry();
        if !self.listed(host) {
            return Err(format!(
                "image {image:?}: registry {host} is not one this node may pull from (--registry, --insecure-registry)"
            ));
        }
        Ok(r)
    }

    fn auth(&self, r: &Reference) -> RegistryAuth {
        match self.auths.get(r.registry()) {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    fn client(&self) -> Result<Client, String> {
        // One provider for every TLS client of the process: ring, as the
        // API client's (none is built into the registry client).
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Not `Client::new`: on a failure (no CA certificates on the
        // system) it falls back to a default client, which panics on the
        // same failure and would have dropped the plain-HTTP registries.
        Client::try_from(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            read_timeout: Some(std::time::Duration::from_secs(30)),
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            extra_root_certificates: self
                .roots
                .iter()
                .map(|der| Certificate {
                    encoding: CertificateEncoding::Der,
                    data: der.clone(),
                })
                .collect(),
            ..ClientConfig::default()
        })
        .map_err(|e| {
            format!(
                "a registry client: {e} (the system's CA certificates, /etc/ssl/certs, are needed)"
            )
        })
    }

    fn runtime() -> Result<tokio::runtime::Runtime, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("an async runtime: {e}"))
    }

    /// The blob `sha256` (hex) from `image`'s repository, verified.
    pub fn pull(&self, image: &str, sha256: &str) -> Result<Vec<u8>, String> {
        let r = self.reference(image)?;
        let client = self.client()?;
        let auth = self.auth(&r);
        let digest = format!("sha256:{}", sha256.to_ascii_lowercase());
        let mut out = Capped(Vec::new());
        Self::runtime()?
            .block_on(async {
                let pull = async {
                    if matches!(auth, RegistryAuth::Basic(..)) {
                        self.check_realm(&r).await?;
                    }
                    client
                        .store_auth_if_needed(r.resolve_registry(), &auth)
                        .await;
                    client
                        .pull_blob(&r, digest.as_str(), &mut out)
                        .await
                        .map_err(|e| with_causes(&e))
                };
                match tokio::time::timeout(PULL_DEADLINE, pull).await {
                    Ok(pulled) => pulled,
                    Err(_) => Err(format!("no end within {} s", PULL_DEADLINE.as_secs())),
                }
            })
            .map_err(|e| format!("pulling {digest} from {image}: {e}"))?;
        Ok(out.0)
    }

    /// The registry client sends a registry's credentials to whatever
    /// token realm its `/v2/` names (any host, any scheme): a registry
    /// could have this node hand them to another host. Asked first: a
    /// Bearer realm must be a registry this node may use, over HTTPS
    /// unless that registry is listed as plain HTTP.
    async fn check_realm(&self, r: &Reference) -> Result<(), String> {
        let host = r.resolve_registry();
        let scheme = match self.plain(host) {
            true => "http",
            false => "https",
        };
        let http = reqwest::Client::builder()
            .tls_certs_merge(self.extra_roots())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        let resp = http
            .get(format!("{scheme}://{host}/v2/"))
            .send()
            .await
            .map_err(|e| format!("{scheme}://{host}/v2/: {}", with_causes(&e)))?;
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let Some(realm) = bearer_realm(&challenge) else {
            return Ok(());
        };
        let (realm_scheme, rest) = realm.split_once("://").unwrap_or(("", ""));
        let realm_host = rest.split('/').next().unwrap_or_default();
        let allowed = match realm_scheme {
            "https" => self.listed(realm_host),
            "http" => self.plain(realm_host),
            _ => false,
        };
        if !allowed {
            return Err(format!(
                "{host} asks for its credentials to go to {realm:?}, not a registry this node may send them to (--registry, --insecure-registry)"
            ));
        }
        Ok(())
    }

    /// Pushes `module` to `image` as a wasm OCI artifact; the manifest's
    /// URL.
    pub fn push(&self, image: &str, module: Vec<u8>) -> Result<String, String> {
        let r = self.reference(image)?;
        let client = self.client()?;
        let auth = self.auth(&r);
        let layers = vec![ImageLayer::new(
            module,
            WASM_LAYER_MEDIA_TYPE.to_string(),
            None,
        )];
        let config = Config::new(b"{}".to_vec(), WASM_CONFIG_MEDIA_TYPE.to_string(), None);
        let manifest = OciImageManifest::build(&layers, &config, None);
        Self::runtime()?
            .block_on(client.push(&r, &layers, config, &auth, Some(manifest)))
            .map(|p| p.manifest_url)
            .map_err(|e| format!("pushing to {image}: {}", with_causes(&e)))
    }
}

/// `e` and what caused it: an HTTP client's "error sending request" says
/// why (a certificate no root signed, a refused connection) only in its
/// sources.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !text.contains(&m) {
            text = format!("{text}: {m}");
        }
        cause = c.source();
    }
    text
}

/// The `realm` of a `Bearer` challenge.
fn bearer_realm(challenge: &str) -> Option<String> {
    let params = challenge.trim().strip_prefix("Bearer ")?;
    params.split(',').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.eq_ignore_ascii_case("realm")).then(|| v.trim_matches('"').to_string())
    })
}

/// A sink that refuses to grow past [`MAX_BLOB`].
struct Capped(Vec<u8>);

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.0.len() + buf.len() > MAX_BLOB {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "the blob is larger than {MAX_BLOB} bytes"
            ))));
        }
        self.0.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_registries_and_their_own_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        let basic = base64::engine::general_purpose::STANDARD.encode("u2:p2");
        std::fs::write(
            &cfg,
            format!(
                r#"{{"auths": {{"https://reg.example:5000/v1/": {{"username": "u1", "password": "p1"}},
                    "other.example": {{"auth": "{basic}"}}}}}}"#
            ),
        )
        .unwrap();
        let r = Registries::new(
            &["reg.example:5000".into()],
            &["127.0.0.1:5001".into()],
            Some(&cfg),
            "--registry-auth",
        )
        .unwrap();
        let ok = r.reference("reg.example:5000/plugins/tuning:v1").unwrap();
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(
            bearer_realm(r#"Bearer realm="https://auth.example/token",service="r""#).as_deref(),
            Some("https://auth.example/token")
        );
        assert_eq!(bearer_realm(r#"Basic realm="x""#), None);
        assert!(matches!(r.auth(&ok), RegistryAuth::Basic(u, p) if u == "u1" && p == "p1"));
        let plain = r.reference("127.0.0.1:5001/p:v1").unwrap();
        assert!(matches!(r.auth(&plain), RegistryAuth::Anonymous));
        // A registry not listed is never contacted, credentials or not.
        let e = r.reference("other.example/p:v1").unwrap_err();
        assert!(e.contains("--registry"), "{e}");
        assert!(r.reference("docker.io/library/x:1").is_err());
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"auths": {"x": {}}}"#).unwrap();
        let e = Registries::new(&[], &[], Some(&bad), "--registry-auth").unwrap_err();
        assert!(
            e.contains("--registry-auth") && e.contains("auths.x"),
            "{e}"
        );
    }
}

//! The kubeconfig multus components write for a service account: the API
//! address from the in-cluster variables, the CA embedded, the token read
//! from a file on every use (so a rotated token is picked up). The thin
//! installer writes one on the host; the thick daemon one for the processes
//! it starts outside its pod.

use std::path::Path;

use base64::Engine as _;
use serde_json::json;

pub const ENV_HOST: &str = "KUBERNETES_SERVICE_HOST";
pub const ENV_PORT: &str = "KUBERNETES_SERVICE_PORT";

/// `https://host:port` from the in-cluster variables (brackets for IPv6);
/// the error names the variable.
pub fn server(host: Option<String>, port: Option<String>) -> Result<String, String> {
    let host = host
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{ENV_HOST} is not set"))?;
    let port = port
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("{ENV_PORT} is not set"))?;
    if port.parse::<u16>().is_err() {
        return Err(format!("{ENV_PORT}={port:?} is not a port"));
    }
    Ok(if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    })
}

/// A kubeconfig for `server` trusting `ca` and reading its token from
/// `token_file` on every use.
pub fn render(server: &str, ca: &[u8], token_file: &Path) -> Vec<u8> {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca),
        }}],
        "users": [{"name": "multus", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "multus-context", "context": {"cluster": "local", "user": "multus"}}],
        "current-context": "multus-context",
    });
    let mut bytes = serde_json::to_vec_pretty(&config).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address() {
        let s = |h: &str, p: &str| server(Some(h.into()), Some(p.into()));
        assert_eq!(s("10.96.0.1", "443").unwrap(), "https://10.96.0.1:443");
        assert_eq!(s("fd00::1", "6443").unwrap(), "https://[fd00::1]:6443");
        assert!(s("10.96.0.1", "https").unwrap_err().contains(ENV_PORT));
        assert!(server(None, Some("443".into()))
            .unwrap_err()
            .contains(ENV_HOST));
    }
}

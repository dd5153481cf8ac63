//! Which proxy, if any, the API client goes through: what client-go does.
//! The kubeconfig cluster's `proxy-url` wins; otherwise the environment
//! (`HTTPS_PROXY` for an https server, `HTTP_PROXY` for http, upper case
//! first), unless the server is loopback or `localhost` (never proxied) or
//! `NO_PROXY` matches it, with Go's rules: `*`; an IP; a CIDR; a domain,
//! which matches itself and its subdomains (`.domain` its subdomains only,
//! `*.domain` the same); each optionally with `:port`.
//!
//! kube-rs reads the environment too, but matches `NO_PROXY` against the
//! proxy's address instead of the server's; the runtime therefore decides
//! here and sets the client's proxy itself.

use std::net::IpAddr;

use http::Uri;

/// The proxy variables of a process environment (containerd passes its
/// own to every CNI plugin).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub https: Option<String>,
    pub http: Option<String>,
    pub no_proxy: Option<String>,
}

fn var(upper: &str, lower: &str, get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    get(upper)
        .filter(|v| !v.is_empty())
        .or_else(|| get(lower).filter(|v| !v.is_empty()))
}

impl ProxyEnv {
    pub fn from(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            https: var("HTTPS_PROXY", "https_proxy", &get),
            http: var("HTTP_PROXY", "http_proxy", &get),
            no_proxy: var("NO_PROXY", "no_proxy", &get),
        }
    }

    pub fn from_process() -> Self {
        Self::from(|k| std::env::var(k).ok())
    }
}

/// A proxy value as Go reads it: no scheme means `http://`.
fn proxy_uri(value: &str) -> Result<Uri, String> {
    let full = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let uri: Uri = full
        .parse()
        .map_err(|e| format!("proxy {value:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => Ok(uri),
        other => Err(format!(
            "proxy {value:?}: scheme {} is not supported (http or https)",
            other.unwrap_or("none")
        )),
    }
}

/// The server's host (lower case, IPv6 without brackets) and port.
fn host_port(server: &Uri) -> (String, u16) {
    let host = server
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = server
        .port_u16()
        .unwrap_or(if server.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    (host, port)
}

/// One `NO_PROXY` entry's host part and port (`None`: any port).
fn entry_host_port(entry: &str) -> (String, Option<u16>) {
    let e = entry.to_ascii_lowercase();
    // `[v6]:port`, `v6` alone, `host:port`, `host`.
    if let Some(rest) = e.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h.to_string(), p.parse().ok());
        }
        return (rest.trim_end_matches(']').to_string(), None);
    }
    if e.parse::<IpAddr>().is_ok() || e.contains('/') {
        return (e, None);
    }
    match e.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().ok()),
        _ => (e, None),
    }
}

/// Whether `NO_PROXY`'s `list` exempts `host`:`port`.
fn exempt(list: &str, host: &str, port: u16) -> bool {
    let ip = host.parse::<IpAddr>().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (h, p) = entry_host_port(entry);
            if p.is_some_and(|p| p != port) {
                return false;
            }
            if let Ok(net) = h.parse::<ipnet::IpNet>() {
                return ip.is_some_and(|ip| net.contains(&ip));
            }
            if let Ok(e_ip) = h.parse::<IpAddr>() {
                return ip == Some(e_ip);
            }
            let domain = h.trim_start_matches('*');
            match domain.strip_prefix('.') {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == domain || host.ends_with(&format!(".{domain}")),
            }
        })
}

/// The proxy for `server`: the kubeconfig's `proxy-url` when it has one,
/// else what `env` says for it; `None` for a direct connection.
pub fn choose(
    server: &Uri,
    proxy_url: Option<&str>,
    env: &ProxyEnv,
) -> Result<Option<Uri>, String> {
    if let Some(p) = proxy_url.filter(|p| !p.is_empty()) {
        return proxy_uri(p).map(Some);
    }
    let value = match server.scheme_str() {
        Some("http") => env.http.as_deref(),
        _ => env.https.as_deref(),
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let (host, port) = host_port(server);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback
        || env
            .no_proxy
            .as_deref()
            .is_some_and(|l| exempt(l, &host, port))
    {
        return Ok(None);
    }
    proxy_uri(value).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(https: &str, no_proxy: &str) -> ProxyEnv {
        ProxyEnv {
            https: Some(https.into()),
            http: None,
            no_proxy: (!no_proxy.is_empty()).then(|| no_proxy.into()),
        }
    }

    fn via(server: &str, e: &ProxyEnv) -> Option<String> {
        choose(&server.parse().unwrap(), None, e)
            .unwrap()
            .map(|u| u.to_string())
    }

    #[test]
    fn the_environment_and_no_proxy_as_client_go_reads_them() {
        let p = "http://proxy.corp:3128";
        let corp = Some("http://proxy.corp:3128/".to_string());
        assert_eq!(via("https://10.96.0.1:443", &env(p, "")), corp);
        // Loopback and localhost are never proxied.
        assert_eq!(via("https://127.0.0.1:6443", &env(p, "")), None);
        assert_eq!(via("https://[::1]:6443", &env(p, "")), None);
        assert_eq!(via("https://localhost:6443", &env(p, "")), None);
        // NO_PROXY matches the server, not the proxy (kube-rs's mistake).
        let np = "127.0.0.1,localhost,node1,10.244.0.0/16, .svc ,example.org,10.96.0.1:8443";
        assert_eq!(via("https://10.244.3.7", &env(p, np)), None);
        assert_eq!(via("https://node1:6443", &env(p, np)), None);
        assert_eq!(via("https://kubernetes.default.svc", &env(p, np)), None);
        assert_eq!(
            via("https://svc", &env(p, np)),
            corp,
            ".svc: subdomains only"
        );
        assert_eq!(via("https://example.org", &env(p, np)), None);
        assert_eq!(via("https://api.example.org", &env(p, np)), None);
        assert_eq!(via("https://badexample.org", &env(p, np)), corp);
        assert_eq!(
            via("https://10.96.0.1:443", &env(p, np)),
            corp,
            "port differs"
        );
        assert_eq!(via("https://10.96.0.1:8443", &env(p, np)), None);
        assert_eq!(via("https://10.96.0.1", &env(p, "*")), None);
        assert_eq!(via("https://[fd00::1]:6443", &env(p, "fd00::/8")), None);
        assert_eq!(
            via("https://[fd00::1]:6443", &env(p, "[fd00::1]:6443")),
            None
        );
        assert_eq!(
            via("https://API.Example.ORG", &env(p, "*.example.org")),
            None
        );
        // A proxy that would break loopback servers (containerd's dead
        // proxy of issue 20) is never used for them, NO_PROXY or not.
        assert_eq!(
            via("https://127.0.0.1:6443", &env("http://127.0.0.1:9/", "")),
            None
        );
    }

    #[test]
    fn the_kubeconfig_wins_and_bad_values_are_named() {
        let e = env("http://proxy.corp:3128", "*");
        let server: Uri = "https://127.0.0.1:6443".parse().unwrap();
        assert_eq!(
            choose(&server, Some("http://explicit:8080"), &e)
                .unwrap()
                .unwrap()
                .to_string(),
            "http://explicit:8080/"
        );
        let bare = env("proxy.corp:3128", "");
        assert_eq!(
            via("https://10.0.0.1", &bare),
            Some("http://proxy.corp:3128/".into()),
            "no scheme: http"
        );
        let socks = env("socks5://proxy:1080", "");
        let msg = choose(&"https://10.0.0.1".parse().unwrap(), None, &socks).unwrap_err();
        assert!(
            msg.contains("socks5") && msg.contains("not supported"),
            "{msg}"
        );
        assert_eq!(
            ProxyEnv::from(|k| match k {
                "https_proxy" => Some("http://lower:1".into()),
                "HTTPS_PROXY" => Some(String::new()),
                "no_proxy" => Some("a".into()),
                _ => None,
            }),
            ProxyEnv {
                https: Some("http://lower:1".into()),
                http: None,
                no_proxy: Some("a".into())
            }
        );
    }
}

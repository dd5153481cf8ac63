//! The kubeconfig multus runs with, and the expiry of its token: a bound
//! service-account token that expired fails every ADD with Unauthorized.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use kube::config::Kubeconfig;
use serde_json::Value;

use super::runtime_conf::Ours;
use super::{Finding, Node};

const CHECK: &str = "kubeconfig";
/// Less than this left is worth a warning: the installer refreshes the
/// host copy well before (the kubelet rotates at 80% of the lifetime).
const SOON: Duration = Duration::from_secs(3600);

/// The `exp` claim of a JWT, if it is one and has one.
pub fn token_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

pub fn check(node: &Node, ours: &Ours, out: &mut Vec<Finding>) {
    let Some(kubeconfig) = &ours.conf.kubeconfig else {
        out.push(Finding::ok(
            CHECK,
            "no kubeconfig: multus runs without the API (no NADs, no network-status)",
        ));
        return;
    };
    let shown = kubeconfig.display();
    let kc = match Kubeconfig::read_from(node.host(kubeconfig)) {
        Ok(k) => k,
        Err(e) => {
            out.push(Finding::error(
                CHECK,
                format!("{shown} cannot be read: {e}: every ADD that needs the API fails"),
                "let the installer write it again (restart the multus pod on this node)",
            ));
            return;
        }
    };
    let user = kc.current_context.as_deref().and_then(|cur| {
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == cur)?
            .context
            .as_ref()?;
        kc.auth_infos
            .iter()
            .find(|a| a.name == ctx.user.as_deref().unwrap_or_default())?
            .auth_info
            .clone()
    });
    let Some(user) = user else {
        out.push(Finding::warning(
            CHECK,
            format!("{shown}: its current context names no user"),
            "multus talks to the API anonymously: check the kubeconfig",
        ));
        return;
    };
    let (token, from) = match (&user.token_file, &user.token) {
        (Some(file), _) => {
            let host = node.host(&PathBuf::from(file));
            match std::fs::read_to_string(&host) {
                Ok(t) => (t, format!("its tokenFile {file}")),
                Err(e) => {
                    out.push(Finding::error(
                        CHECK,
                        format!("{shown} reads its token from {file}, which cannot be read: {e}"),
                        "the watching installer keeps that copy: check that its pod runs on this node",
                    ));
                    return;
                }
            }
        }
        (None, Some(t)) => {
            use secrecy::ExposeSecret;
            (
                t.expose_secret().to_string(),
                "its embedded token".to_string(),
            )
        }
        (None, None) => {
            out.push(Finding::ok(
                CHECK,
                format!("{shown}: no token (client certificates or another method)"),
            ));
            return;
        }
    };
    let Some(expiry) = token_expiry(&token) else {
        out.push(Finding::ok(
            CHECK,
            format!("{shown}: {from} carries no expiry"),
        ));
        return;
    };
    let now = SystemTime::now();
    match expiry.duration_since(now) {
        Err(past) => out.push(Finding::error(
            CHECK,
            format!(
                "{shown}: {from} expired {} ago: every API call fails Unauthorized",
                humantime::format_duration(Duration::from_secs(past.duration().as_secs()))
            ),
            "an embedded token never refreshes: reinstall with this installer, which writes a tokenFile it keeps fresh; with a tokenFile, check the watching installer's pod",
        )),
        Ok(left) if left < SOON => out.push(Finding::warning(
            CHECK,
            format!("{shown}: {from} expires in {}", humantime::format_duration(Duration::from_secs(left.as_secs()))),
            "the watching installer should have refreshed it by now: check its pod and log",
        )),
        Ok(left) => out.push(Finding::ok(
            CHECK,
            format!("{shown}: {from} valid for {}", humantime::format_duration(Duration::from_secs(left.as_secs()))),
        )),
    }
}

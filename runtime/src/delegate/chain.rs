//! Conflist semantics (libcni `AddNetworkList` and friends): plugins in order,
//! `name`/`cniVersion`/`prevResult`/`runtimeConfig` injected into each.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value};

use super::{runtime_config, PluginCall, PluginError, PluginRunner};
use crate::boundary::PluginType;
use crate::cni::result::{self, CniResult};
use crate::cni::version::Version;
use crate::cni::{CniError, Command};
use crate::config::{Attachment, NetworkConfig};

/// Where and for whom a delegate network runs.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub cni_args: &'a str,
    pub capability_args: &'a Map<String, Value>,
    pub path: &'a [PathBuf],
}

#[derive(Debug, thiserror::Error)]
#[error("network {network:?}: plugin {plugin:?} {command}: {source}")]
pub struct ChainError {
    pub network: String,
    pub plugin: String,
    pub command: Command,
    #[source]
    pub source: Box<PluginError>,
}

impl ChainError {
    pub fn into_cni(self) -> CniError {
        let ctx = format!(
            "network {:?}: plugin {:?} {}",
            self.network, self.plugin, self.command
        );
        (*self.source).into_cni().context(ctx)
    }
}

/// Builds the stdin of one plugin.
fn plugin_conf(
    net: &NetworkConfig,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    target: &Target<'_>,
    extra: &[(&str, &Value)],
) -> Vec<u8> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(net.name.clone()));
    conf.insert("cniVersion".into(), Value::String(net.cni_version.clone()));
    // Only the runtime's own result is a prevResult (the spec gives the
    // first plugin of an ADD none): one a config carries would reach a
    // native plugin that echoes it (portmap), whose output then reads as
    // the host's own knowledge and grants the next module its links.
    // Every spelling a Go plugin reads as prevResult (`PrevResult`,
    // `prevReſult`): the last would win over the runtime's own.
    conf.retain(|k, _| crate::boundary::go_fold(k) != "prevresult");
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let rc = runtime_config::filter(plugin, target.capability_args);
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    for (k, v) in extra {
        conf.insert((*k).to_string(), (*v).clone());
    }
    serde_json::to_vec(&conf).expect("plugin conf serializes")
}

fn call(
    runner: &dyn PluginRunner,
    net: &NetworkConfig,
    plugin: &Map<String, Value>,
    command: Command,
    target: &Target<'_>,
    prev: Option<&Value>,
    extra: &[(&str, &Value)],
) -> Result<Vec<u8>, ChainError> {
    let ty = plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let fail = |source: PluginError| ChainError {
        network: net.name.clone(),
        plugin: ty.to_string(),
        command,
        source: Box::new(source),
    };
    let plugin_type =
        PluginType::parse(ty, "type").map_err(|r| fail(PluginError::Cni(r.into())))?;
    let stdin = plugin_conf(net, plugin, prev, target, extra);
    let started = Instant::now();
    let out = runner.run(&PluginCall {
        plugin_type: &plugin_type,
        command,
        container_id: target.container_id,
        netns: target.netns,
        ifname: target.ifname,
        known_prev: prev,
        cni_args: target.cni_args,
        path: target.path,
        extra_env: &[],
        stdin: &stdin,
    });
    tracing::debug!(
        network = %net.name, plugin = ty, ifname = target.ifname, command = %command,
        duration_us = started.elapsed().as_micros() as u64, ok = out.is_ok(), "plugin call"
    );
    out.map_err(fail)
}

fn parse_result(net: &NetworkConfig, ty: &str, stdout: &[u8]) -> Result<Value, ChainError> {
    let err = |reason: String| ChainError {
        network: net.name.clone(),
        plugin: ty.to_string(),
        command: Command::Add,
        source: Box::new(PluginError::BadOutput {
            plugin: ty.into(),
            reason,
        }),
    };
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(CniResult::default().to_value(&net.cni_version));
    }
    let value: Value = serde_json::from_slice(stdout).map_err(|e| err(e.to_string()))?;
    // libcni hands the next plugin the result converted to the list's version.
    result::convert(&value, &net.cni_version, &net.cni_version).map_err(|e| err(e.msg))
}

/// ADD: every plugin in order, each seeing the previous one's result.
pub fn add(
    runner: &dyn PluginRunner,
    net: &NetworkConfig,
    target: &Target<'_>,
) -> Result<Value, ChainError> {
    let mut prev: Option<Value> = None;
    for plugin in &net.plugins {
        let out = call(
            runner,
            net,
            plugin,
            Command::Add,
            target,
            prev.as_ref(),
            &[],
        )?;
        let ty = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        prev = Some(parse_result(net, ty, &out)?);
    }
    Ok(prev.unwrap_or_else(|| CniResult::default().to_value(&net.cni_version)))
}

fn passes_prev_result(net: &NetworkConfig) -> bool {
    net.version() >= Version(0, 4, 0)
}

/// DEL: every plugin in reverse; `prev` is the cached ADD result (0.4.0
/// and later). The spec lets libcni halt at the first error; here every
/// plugin still gets its DEL and the first error is returned, because one
/// broken plugin (say, a module the sandbox refuses) must not leave the
/// interface and IP of the plugins before it behind. DEL is idempotent, so
/// the extra calls are safe.
pub fn del(
    runner: &dyn PluginRunner,
    net: &NetworkConfig,
    target: &Target<'_>,
    prev: Option<&Value>,
) -> Result<(), ChainError> {
    let prev = prev.filter(|_| passes_prev_result(net));
    let mut first = None;
    for plugin in net.plugins.iter().rev() {
        if let Err(e) = call(runner, net, plugin, Command::Del, target, prev, &[]) {
            tracing::warn!(error = %e, "DEL goes on with the next plugin");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Whether CHECK applies: the list must be 0.4.0+ and not `disableCheck`.
/// Upstream fails such lists instead (multus #737); skipping them is what the
/// spec allows, since CHECK did not exist before 0.4.0.
pub fn checks(net: &NetworkConfig) -> bool {
    passes_prev_result(net) && !net.disable_check
}

/// CHECK: every plugin in order with the cached result as `prevResult`.
pub fn check(
    runner: &dyn PluginRunner,
    net: &NetworkConfig,
    target: &Target<'_>,
    prev: &Value,
) -> Result<(), ChainError> {
    for plugin in &net.plugins {
        call(runner, net, plugin, Command::Check, target, Some(prev), &[])?;
    }
    Ok(())
}

/// STATUS and GC exist from 1.1.0 on; older lists are skipped, as libcni does.
pub fn has_status_and_gc(net: &NetworkConfig) -> bool {
    net.version() >= Version(1, 1, 0)
}

/// STATUS: every plugin; the first error is the answer.
pub fn status(
    runner: &dyn PluginRunner,
    net: &NetworkConfig,
    target: &Target<'_>,
) -> Result<(), ChainError> {
    for plugin in &net.plugins {
        call(runner, net, plugin, Command::Status, target, None, &[])?;
    }
    Ok(())
}

/// GC: every plugin with the attachments still valid; keeps going past
/// failures and returns them all.
pub fn gc(
    runner: &dyn PluginRunner,
    net: &NetworkConfig,
    target: &Target<'_>,
    valid: &[Attachment],
) -> Vec<ChainError> {
    if net.disable_gc {
        return Vec::new();
    }
    let list = serde_json::to_value(valid).expect("attachments serialize");
    let extra = [
        ("cni.dev/valid-attachments", &list),
        ("cni.dev/attachments", &list),
    ];
    net.plugins
        .iter()
        .filter_map(|p| call(runner, net, p, Command::Gc, target, None, &extra).err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delegate::recording::Recording;
    use serde_json::json;

    fn net(v: &str, extra: &str) -> NetworkConfig {
        let b = format!(
            r#"{{"cniVersion":"{v}","name":"n"{extra},"plugins":[{{"type":"bridge","capabilities":{{"mac":true}}}},{{"type":"tuning","keep":[1,2.0]}}]}}"#
        );
        NetworkConfig::from_bytes(b.as_bytes(), "t").unwrap()
    }

    fn target<'a>(caps: &'a Map<String, Value>) -> Target<'a> {
        Target {
            container_id: "c",
            netns: "/run/netns/p",
            ifname: "net1",
            cni_args: "IgnoreUnknown=1",
            capability_args: caps,
            path: &[],
        }
    }

    #[test]
    fn add_threads_prev_result_and_injects() {
        let r = Recording::default();
        r.respond(
            "bridge",
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}"#,
        );
        r.respond(
            "tuning",
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}],"dns":{"domain":"d"}}"#,
        );
        let caps = json!({"mac":"aa:bb:cc:dd:ee:ff","ips":["10.0.0.2/24"]})
            .as_object()
            .unwrap()
            .clone();
        let out = add(&r, &net("1.0.0", ""), &target(&caps)).unwrap();
        assert_eq!(out["dns"]["domain"], "d");
        let calls = r.calls();
        assert_eq!(calls.len(), 2);
        let first: Value = serde_json::from_slice(&calls[0].stdin).unwrap();
        assert_eq!(first["name"], "n");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("prevResult").is_none());
        assert_eq!(first["runtimeConfig"], json!({"mac":"aa:bb:cc:dd:ee:ff"}));
        let second: Value = serde_json::from_slice(&calls[1].stdin).unwrap();
        assert_eq!(second["prevResult"]["ips"][0]["address"], "10.0.0.2/24");
        assert!(second.get("runtimeConfig").is_none());
        assert!(String::from_utf8_lossy(&calls[1].stdin).contains(r#""keep":[1,2.0]"#));
        assert_eq!(calls[1].ifname, "net1");
    }

    #[test]
    fn del_runs_in_reverse_and_prev_result_only_from_040() {
        let r = Recording::default();
        let prev = json!({"cniVersion":"0.3.1","ips":[]});
        del(&r, &net("0.3.1", ""), &target(&Map::new()), Some(&prev)).unwrap();
        let calls = r.calls();
        assert_eq!(
            calls
                .iter()
                .map(|c| c.plugin_type.as_str())
                .collect::<Vec<_>>(),
            vec!["tuning", "bridge"]
        );
        let conf: Value = serde_json::from_slice(&calls[0].stdin).unwrap();
        assert!(conf.get("prevResult").is_none());
        let r = Recording::default();
        del(&r, &net("0.4.0", ""), &target(&Map::new()), Some(&prev)).unwrap();
        let conf: Value = serde_json::from_slice(&r.calls()[0].stdin).unwrap();
        assert!(conf.get("prevResult").is_some());
    }

    #[test]
    fn del_goes_past_a_failing_plugin() {
        let r = Recording::default();
        r.fail("tuning", 7, "refused");
        let e = del(&r, &net("1.0.0", ""), &target(&Map::new()), None).unwrap_err();
        assert_eq!(e.plugin, "tuning");
        let seq: Vec<_> = r.calls().iter().map(|c| c.plugin_type.clone()).collect();
        assert_eq!(seq, vec!["tuning", "bridge"]);
    }

    #[test]
    fn add_stops_at_first_error_with_context() {
        let r = Recording::default();
        r.fail("bridge", 11, "busy");
        let e = add(&r, &net("1.0.0", ""), &target(&Map::new())).unwrap_err();
        assert_eq!(r.calls().len(), 1);
        let cni = e.into_cni();
        assert_eq!(cni.code, 11);
        assert!(
            cni.msg.contains("network \"n\"")
                && cni.msg.contains("\"bridge\" ADD")
                && cni.msg.contains("busy"),
            "{}",
            cni.msg
        );
    }

    #[test]
    fn check_status_gc_gates() {
        assert!(!checks(&net("0.3.1", "")));
        assert!(!checks(&net("1.0.0", r#","disableCheck":true"#)));
        assert!(checks(&net("0.4.0", "")));
        assert!(!has_status_and_gc(&net("1.0.0", "")));
        assert!(has_status_and_gc(&net("1.1.0", "")));
        let r = Recording::default();
        r.fail("bridge", 999, "x");
        let valid = vec![Attachment {
            container_id: "c".into(),
            ifname: "net1".into(),
        }];
        let errs = gc(&r, &net("1.1.0", ""), &target(&Map::new()), &valid);
        assert_eq!(errs.len(), 1);
        let calls = r.calls();
        assert_eq!(calls.len(), 2, "GC goes on past a failing plugin");
        let conf: Value = serde_json::from_slice(&calls[1].stdin).unwrap();
        assert_eq!(conf["cni.dev/valid-attachments"][0]["containerID"], "c");
        assert_eq!(conf["cni.dev/attachments"][0]["ifname"], "net1");
        let r = Recording::default();
        assert!(gc(
            &r,
            &net("1.1.0", r#","disableGC":true"#),
            &target(&Map::new()),
            &valid
        )
        .is_empty());
        assert!(r.calls().is_empty());
    }

    #[test]
    fn garbage_output_is_decode_error() {
        let r = Recording::default();
        r.respond("bridge", "not json");
        let e = add(&r, &net("1.0.0", ""), &target(&Map::new()))
            .unwrap_err()
            .into_cni();
        assert_eq!(e.code, 6);
    }
}

//! `deploy/thick/`: every document is a valid object of its kind; the
//! installer runs `multusctl install --thick` with flags it really has; the
//! daemon runs with the ConfigMap's config, which parses; and every path the
//! installer writes, and the daemon reads or writes, is the same host path
//! inside the containers. (That the ClusterRole grants exactly the calls the
//! daemon makes is checked in `thick.rs`, against the in-test API server.)

use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use multus::config::wasm::{DEFAULT_CACHE_DIR, DEFAULT_PLUGIN_DIR};
use multus_testbed::manifests::{configmap_file, documents_in, find_in, host_path_of, thick};
use multus_thick::config::DaemonConfig;
use multusctl::cli::{Cli, Commands};
use multusctl::install::Options;
use serde_json::Value;

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", v["kind"], v["metadata"]["name"]))
}

#[test]
fn every_document_is_a_valid_object_of_its_kind() {
    let mut kinds: Vec<String> = documents_in(&thick())
        .into_iter()
        .map(|(_, v)| {
            match v["kind"].as_str().unwrap_or_default() {
                "ClusterRole" => drop(typed::<ClusterRole>(&v)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&v)),
                "ConfigMap" => drop(typed::<ConfigMap>(&v)),
                "DaemonSet" => drop(typed::<DaemonSet>(&v)),
                "Deployment" => drop(typed::<k8s_openapi::api::apps::v1::Deployment>(&v)),
                "ValidatingAdmissionPolicy" => drop(typed::<
                    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
                >(&v)),
                "ValidatingAdmissionPolicyBinding" => drop(typed::<
                    k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
                >(&v)),
                "Role" => drop(typed::<Role>(&v)),
                "RoleBinding" => drop(typed::<RoleBinding>(&v)),
                "ServiceAccount" | "CustomResourceDefinition" => {}
                other => panic!("unexpected kind {other:?}"),
            }
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "DaemonSet",
            "Deployment",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
}

fn options(command: &[String]) -> Options {
    match Cli::try_parse_from(command) {
        Ok(Cli {
            command: Commands::Install(o),
        }) => *o,
        Ok(other) => panic!("{command:?} is not an install: {other:?}"),
        Err(e) => panic!("{command:?}: {e}"),
    }
}

/// Asserts that `seen` in `c` is the host path `host`.
fn same_host_path(ds: &DaemonSet, c: &Container, seen: &Path, host: &Path) {
    assert_eq!(
        host_path_of(ds, c, seen).as_deref(),
        Some(host),
        "{} in container {}",
        seen.display(),
        c.name
    );
}

#[test]
fn daemonset_runs_real_flags_and_mounts_what_both_containers_touch() {
    let ds: DaemonSet = typed(&find_in(&thick(), "DaemonSet", None));
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(spec.host_network, Some(true));
    // chrootDir's /proc is the host's: the daemon must be in its PID
    // namespace (issue 20: every native delegate failed without it).
    assert_eq!(spec.host_pid, Some(true));
    let init = &spec.init_containers.as_ref().unwrap()[0];
    let daemon = &spec.containers[0];
    assert_eq!(init.image, daemon.image);

    // The installer: thick and once; what it writes is mounted.
    let o = options(init.command.as_ref().unwrap());
    assert!(o.thick && o.once);
    for host in [
        o.cni_bin_dir.clone(),
        PathBuf::from(DEFAULT_PLUGIN_DIR),
        PathBuf::from(DEFAULT_CACHE_DIR),
    ] {
        same_host_path(&ds, init, &o.host(&host), &host);
    }

    // The daemon: upstream's binary and flag, the ConfigMap's config.
    let command = daemon.command.clone().unwrap();
    assert_eq!(command[..2], ["/usr/bin/multus-daemon", "-config"]);
    let config_path = Path::new(&command[2]);
    let cm: ConfigMap = typed(&find_in(&thick(), "ConfigMap", None));
    let (name, key) = configmap_file(&ds, daemon, config_path);
    assert_eq!(Some(name), cm.metadata.name.clone());
    let key = key.as_str();
    let text = &cm.data.as_ref().unwrap()[key];
    let config = DaemonConfig::parse(text.as_bytes()).unwrap();
    let keys: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let key_path = |k: &str, default: &str| {
        PathBuf::from(keys.get(k).and_then(Value::as_str).unwrap_or(default))
    };

    // What the daemon reads and writes is the host's, at the same path
    // (the generated conf names them for the host's shim and multus), but
    // the CNI conf dir, which it reaches under /host, and the host root.
    same_host_path(&ds, daemon, &config.socket_dir, Path::new("/run/multus"));
    let chroot = config.chroot_dir.clone().expect("chrootDir");
    same_host_path(&ds, daemon, &chroot, Path::new("/"));
    same_host_path(
        &ds,
        daemon,
        &key_path("cniConfigDir", "/etc/cni/net.d"),
        Path::new("/etc/cni/net.d"),
    );
    for (k, default) in [
        ("cniDir", "/var/lib/cni/multus"),
        ("binDir", "/opt/cni/bin"),
        ("wasmPluginDir", DEFAULT_PLUGIN_DIR),
        ("wasmCacheDir", DEFAULT_CACHE_DIR),
    ] {
        let p = key_path(k, default);
        same_host_path(&ds, daemon, &p, &p);
    }
    for p in ["/run/netns", "/var/lib/kubelet/pod-resources"] {
        same_host_path(&ds, daemon, Path::new(p), Path::new(p));
    }

    // The pod watch cache's node, and probes on the metrics port.
    let env = daemon.env.as_ref().unwrap();
    let node = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    assert_eq!(
        node.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );
    for probe in [&daemon.readiness_probe, &daemon.liveness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
                config.metrics_port.unwrap() as i32
            )
        );
    }

    // The plugin-sync container: real flags, and the plugin and cache dirs
    // the daemon reads are where it writes them.
    let sync = spec
        .containers
        .iter()
        .find(|c| c.name == "plugin-sync")
        .unwrap();
    let command = sync.command.clone().unwrap();
    let parsed = multusctl::cli::Cli::try_parse_from(
        command.iter().cloned().chain(["--node".into(), "n".into()]),
    );
    let Ok(multusctl::cli::Cli {
        command:
            multusctl::cli::Commands::Plugin(multusctl::cli::commands::plugin::PluginCommand::Sync(
                args,
            )),
    }) = parsed
    else {
        panic!("{command:?}: {parsed:?}");
    };
    for (seen, host) in [
        (&args.plugin_dir, DEFAULT_PLUGIN_DIR),
        (&args.cache_dir, DEFAULT_CACHE_DIR),
    ] {
        assert_eq!(seen, Path::new(host));
        same_host_path(&ds, sync, &args.host_root.join(&host[1..]), Path::new(host));
    }
}

//! The manifests of `deploy/`: every document is a valid object of its
//! kind, the DaemonSet runs `multusctl` with flags it really has, and what
//! it mounts covers every host path the installer writes. (That the RBAC
//! grants exactly the calls the code makes is checked end to end in
//! `install.rs`, against the requests the in-test API server saw.)

use std::path::Path;

use clap::Parser;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use multus_testbed::manifests::{configmap_file, documents, find, host_path_of};
use multusctl::cli::{Cli, Commands};
use multusctl::install::{settings, Options};
use serde_json::Value;

fn typed<T: serde::de::DeserializeOwned>(file: &str, v: &Value) -> T {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{file}: {} {}: {e}", v["kind"], v["metadata"]["name"]))
}

#[test]
fn every_document_is_a_valid_object_of_its_kind() {
    let docs = documents();
    let mut kinds: Vec<String> = Vec::new();
    for (file, v) in &docs {
        match v["kind"].as_str().unwrap_or_default() {
            "CustomResourceDefinition" => {
                let crd: CustomResourceDefinition = typed(file, v);
                let (plurals, version) = match crd.spec.group.as_str() {
                    "k8s.cni.cncf.io" => (&["network-attachment-definitions"][..], "v1"),
                    "multus-wasm.io" => (&["wasmplugins", "wasmpluginnodes"][..], "v1alpha1"),
                    other => panic!("{file}: a CRD of group {other}"),
                };
                assert!(plurals.contains(&crd.spec.names.plural.as_str()));
                assert!(crd
                    .spec
                    .versions
                    .iter()
                    .any(|v| v.name == version && v.served && v.storage));
            }
            "ServiceAccount" => drop(typed::<ServiceAccount>(file, v)),
            "ClusterRole" => drop(typed::<ClusterRole>(file, v)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(file, v)),
            "Role" => drop(typed::<Role>(file, v)),
            "RoleBinding" => drop(typed::<RoleBinding>(file, v)),
            "ConfigMap" => drop(typed::<ConfigMap>(file, v)),
            "DaemonSet" => drop(typed::<DaemonSet>(file, v)),
            "Deployment" => drop(typed::<Deployment>(file, v)),
            "ValidatingAdmissionPolicy" => drop(typed::<
                k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
            >(file, v)),
            "ValidatingAdmissionPolicyBinding" => drop(typed::<
                k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            >(file, v)),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
        kinds.push(v["kind"].as_str().unwrap().to_string());
    }
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

fn daemonset() -> DaemonSet {
    typed("daemonset.yaml", &find("DaemonSet", None))
}

/// The installer options a container command parses to.
fn options(command: &[String]) -> Options {
    match Cli::try_parse_from(command) {
        Ok(Cli {
            command: Commands::Install(o),
        }) => *o,
        Ok(other) => panic!("{command:?} is not an install: {other:?}"),
        Err(e) => panic!("{command:?}: {e}"),
    }
}

#[test]
fn daemonset_runs_real_flags_and_mounts_what_the_installer_writes() {
    let ds = daemonset();
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.service_account_name.as_deref(), Some("multus"));
    assert!(spec
        .tolerations
        .iter()
        .flatten()
        .any(|t| t.operator.as_deref() == Some("Exists")
            && t.effect.as_deref() == Some("NoSchedule")));
    let init = &spec.init_containers.as_ref().unwrap()[0];
    let main = &spec.containers[0];
    let probe = main
        .readiness_probe
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap()
        .command
        .clone()
        .unwrap();

    let init_o = options(init.command.as_ref().unwrap());
    let main_o = options(main.command.as_ref().unwrap());
    let probe_o = options(&probe);
    assert!(init_o.once && !main_o.once && probe_o.check);
    assert!(main_o.cleanup_on_exit);
    for o in [&main_o, &probe_o] {
        assert_eq!(o.host_root, init_o.host_root);
        assert_eq!(o.config, init_o.config);
        assert_eq!(o.master_mode, init_o.master_mode);
        assert_eq!(o.cni_conf_dir, init_o.cni_conf_dir);
    }

    // The --config file is the ConfigMap's, and its keys are valid.
    let config = init_o.config.clone().unwrap();
    let cm: ConfigMap = typed("configmap.yaml", &find("ConfigMap", None));
    let (name, key) = configmap_file(&ds, init, &config);
    assert_eq!(Some(name), cm.metadata.name.clone());
    let key = key.as_str();
    let text = &cm.data.as_ref().unwrap()[key];
    let keys = settings::parse_config(text.as_bytes(), &config).unwrap();

    // Every host path the installer writes is a host mount at the same
    // path under --host-root, in both containers.
    let wasm_dir = settings::string(&keys, "wasmPluginDir")
        .unwrap_or(multus::config::wasm::DEFAULT_PLUGIN_DIR);
    let cache_dir =
        settings::string(&keys, "wasmCacheDir").unwrap_or(multus::config::wasm::DEFAULT_CACHE_DIR);
    let conf_dir =
        settings::string(&keys, "confDir").unwrap_or(multus::config::multus::DEFAULT_CONF_DIR);
    for c in [init, main] {
        for host in [
            init_o.cni_conf_dir.as_path(),
            init_o.cni_bin_dir.as_path(),
            Path::new(wasm_dir),
            Path::new(cache_dir),
            Path::new(conf_dir),
        ] {
            let seen = init_o.host(host);
            assert_eq!(
                host_path_of(&ds, c, &seen).as_deref(),
                Some(host),
                "{} in {}",
                seen.display(),
                c.name
            );
        }
    }
    plugin_sync_sees_the_plugin_and_cache_dirs(&ds, wasm_dir, cache_dir);
}

/// The plugin-sync container runs real flags, as this node (NODE_NAME),
/// and writes the plugin and cache dirs the runtime reads (`plugin sync`
/// defaults to the conf's defaults, so the conf must keep them).
pub fn plugin_sync_sees_the_plugin_and_cache_dirs(ds: &DaemonSet, wasm_dir: &str, cache_dir: &str) {
    use multusctl::cli::commands::plugin::PluginCommand;
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == "plugin-sync")
        .expect("a plugin-sync container");
    let mut command = c.command.clone().unwrap();
    command.extend(["--node".to_string(), "n".to_string()]);
    let args = match Cli::try_parse_from(&command) {
        Ok(Cli {
            command: Commands::Plugin(PluginCommand::Sync(a)),
        }) => a,
        other => panic!("{command:?}: {other:?}"),
    };
    assert_eq!(args.plugin_dir, Path::new(wasm_dir));
    assert_eq!(args.cache_dir, Path::new(cache_dir));
    assert!(c.env.iter().flatten().any(|e| e.name == "NODE_NAME"
        && e.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .is_some_and(|f| f.field_path == "spec.nodeName")));
    for host in [wasm_dir, cache_dir] {
        let seen = args.host_root.join(host.trim_start_matches('/'));
        assert_eq!(
            host_path_of(ds, c, &seen).as_deref(),
            Some(Path::new(host)),
            "{} in plugin-sync",
            seen.display()
        );
    }
}

#[test]
fn bindings_name_the_daemonsets_service_account() {
    let sa: ServiceAccount = typed("rbac.yaml", &find("ServiceAccount", Some("multus")));
    let ns = sa.metadata.namespace.clone();
    let crb: ClusterRoleBinding = typed("rbac.yaml", &find("ClusterRoleBinding", Some("multus")));
    let rb: RoleBinding = typed("rbac.yaml", &find("RoleBinding", Some("multus-master-nad")));
    for subjects in [crb.subjects.unwrap(), rb.subjects.unwrap()] {
        assert_eq!(subjects.len(), 1);
        assert_eq!(Some(subjects[0].name.clone()), sa.metadata.name);
        assert_eq!(subjects[0].namespace, ns);
    }
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(rb.role_ref.kind, "Role");
    let role: Role = typed("rbac.yaml", &find("Role", Some("multus-master-nad")));
    assert_eq!(rb.role_ref.name, role.metadata.name.clone().unwrap());
    // The master's NAD is created in multusNamespace: the Role must be there.
    let cm: ConfigMap = typed("configmap.yaml", &find("ConfigMap", None));
    let keys = settings::parse_config(
        cm.data.unwrap()["config.json"].as_bytes(),
        Path::new("config.json"),
    )
    .unwrap();
    assert_eq!(
        role.metadata.namespace.as_deref(),
        Some(settings::string(&keys, "multusNamespace").unwrap_or("kube-system"))
    );
    assert_eq!(daemonset().metadata.namespace, ns);
}

/// A controller Deployment `name` of `dir`'s kustomization runs real
/// flags (`is` its command), on the host network, as its own service
/// account, which its ClusterRoleBinding binds to its ClusterRole.
fn runs_as_its_own_account(dir: &Path, name: &str, is: fn(&Commands) -> bool) {
    let doc = |kind: &str| multus_testbed::manifests::find_in(dir, kind, Some(name));
    let d: Deployment = typed(name, &doc("Deployment"));
    let spec = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.host_network, Some(true));
    // One replica: on a lost node it must move, not wait for the Node's
    // deletion (a DaemonSet's pods stay; a controller's must not).
    let unbounded: Vec<_> = spec
        .tolerations
        .iter()
        .flatten()
        .filter(|t| t.effect.as_deref() != Some("NoSchedule") && t.toleration_seconds.is_none())
        .collect();
    assert!(unbounded.is_empty(), "{name}: {unbounded:?}");
    let command = spec.containers[0].command.clone().unwrap();
    match Cli::try_parse_from(&command) {
        Ok(Cli { command }) => assert!(is(&command), "{command:?}"),
        Err(e) => panic!("{command:?}: {e}"),
    }
    let sa: ServiceAccount = typed(name, &doc("ServiceAccount"));
    assert_eq!(spec.service_account_name, sa.metadata.name);
    let crb: ClusterRoleBinding = typed(name, &doc("ClusterRoleBinding"));
    let subject = &crb.subjects.unwrap()[0];
    assert_eq!(
        (Some(&subject.name), &subject.namespace),
        (sa.metadata.name.as_ref(), &sa.metadata.namespace)
    );
    assert_eq!(sa.metadata.namespace, d.metadata.namespace);
    assert_eq!(crb.role_ref.name, name);
}

/// deploy/plugins/aggregate.yaml: the one writer of WasmPlugins' status.
#[test]
fn the_aggregator_runs_real_flags_as_its_own_account() {
    use multusctl::cli::commands::plugin::PluginCommand;
    runs_as_its_own_account(
        &multus_testbed::manifests::dir(),
        "multus-plugin-aggregate",
        |c| matches!(c, Commands::Plugin(PluginCommand::Aggregate(_))),
    );
}

/// deploy/whereabouts/slices.yaml: the node-slice controller; its Role
/// binds the same account in the pools' namespace.
#[test]
fn the_slice_controller_runs_real_flags_as_its_own_account() {
    use multusctl::cli::commands::ipam::IpamCommand;
    let dir = multus_testbed::manifests::whereabouts();
    runs_as_its_own_account(
        &dir,
        "multus-ipam-slices",
        |c| matches!(c, Commands::Ipam(IpamCommand::Slices(a)) if !a.once),
    );
    let rb: RoleBinding = typed(
        "slices.yaml",
        &multus_testbed::manifests::find_in(&dir, "RoleBinding", Some("multus-ipam-slices")),
    );
    assert_eq!(rb.role_ref.name, "multus-ipam-slices");
    assert_eq!(rb.subjects.unwrap()[0].name, "multus-ipam-slices");
}

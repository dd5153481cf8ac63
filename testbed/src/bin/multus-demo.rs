//! A guided run of multus on an embedded default: a throwaway node and pod
//! netns, an in-process Kubernetes API server holding the pod and two
//! NetworkAttachmentDefinitions, ADD through the built `multus` binary (the
//! cluster network plus the two networks the pod's annotation selects), the
//! pod's interfaces and its network-status annotation, then DEL and proof
//! that nothing is left.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use multus_testbed::kube_api::FakeKubeApi;
use multus_testbed::{confs, exec_cni, files_under, reference_plugin_dir, Netns};

#[derive(Parser)]
#[command(about = "Demo: a pod with three networks through multus, then torn down")]
struct Args {
    /// The multus binary (default: next to this one).
    #[arg(long)]
    multus: Option<PathBuf>,
    /// Built wasm plugins (default: target/plugins); host-local and tuning
    /// found there run as sandboxed components instead of being exec'd.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Exec every plugin natively, even when wasm builds exist.
    #[arg(long)]
    native_only: bool,
}

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me.parent().context("binary has no directory")?.join(name))
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn main() -> Result<()> {
    let args = Args::parse();
    let multus = match args.multus {
        Some(p) => p,
        None => sibling("multus")?,
    };
    let plugins = reference_plugin_dir();
    for p in ["bridge", "macvlan", "host-local", "static", "tuning"] {
        if !plugins.join(p).is_file() {
            bail!(
                "reference plugin {p} missing in {} (apt-get install containernetworking-plugins)",
                plugins.display()
            );
        }
    }
    let node = Netns::new("demo-node").context("creating the node netns (needs root)")?;
    let pod = Netns::new("demo-pod")?;
    node.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
    ])?;
    node.ip(&["link", "set", "uplink0", "up"])?;
    node.ip(&["link", "set", "uplink0p", "up"])?;
    let work = tempfile::tempdir()?;
    let data = work.path().join("ipam");
    let cni_dir = work.path().join("multus");
    let conf_dir = work.path().join("net.d");
    std::fs::create_dir_all(&conf_dir)?;
    let cluster = confs::bridge_host_local("cluster", "cni0", "10.88.0.0/24", &data);
    std::fs::write(
        conf_dir.join("10-cluster.conflist"),
        serde_json::to_vec(&cluster)?,
    )?;
    // The API server listens on 127.0.0.1 of the node netns only.
    let api = FakeKubeApi::start(&node, "demo-token")?;
    let macvlan = confs::macvlan_host_local("macvlan-net", "uplink0", "10.89.0.0/24", &data);
    api.add_nad("default", "macvlan-net", Some(&macvlan.to_string()), &[]);
    let storage = confs::bridge_static_tuning("storage-net", "stor0", "10.90.0.10/24", "net2");
    api.add_nad("storage", "storage-net", Some(&storage.to_string()), &[]);
    let selection = "macvlan-net, storage/storage-net";
    api.add_pod(
        "default",
        "demo",
        "demo-uid",
        &[("k8s.v1.cni.cncf.io/networks", selection)],
        &[],
    );
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "kubeconfig": api.kubeconfig(), "clusterNetwork": "cluster",
        "confDir": conf_dir, "cniDir": cni_dir, "binDir": plugins,
    });
    let mut conf = conf;
    let wasm_dir = match args.wasm {
        Some(d) => d,
        None => sibling("../plugins")?,
    };
    let wasm: Vec<&str> = ["host-local", "tuning"]
        .into_iter()
        .filter(|p| !args.native_only && wasm_dir.join(format!("{p}.wasm")).is_file())
        .collect();
    if !wasm.is_empty() {
        let installed = work.path().join("plugins");
        std::fs::create_dir_all(&installed)?;
        for p in &wasm {
            std::fs::copy(
                wasm_dir.join(format!("{p}.wasm")),
                installed.join(format!("{p}.wasm")),
            )?;
        }
        conf["wasmPluginDir"] = serde_json::json!(installed);
        conf["wasmCacheDir"] = serde_json::json!(work.path().join("wasm-cache"));
        conf["storeRoots"] = serde_json::json!(["/var/lib/cni/networks", "/run/cni", work.path()]);
    }
    section("the pod (served by the in-process API server)");
    println!("default/demo  k8s.v1.cni.cncf.io/networks: {selection:?}");
    section("delegates");
    println!(
        "eth0: cluster (10-cluster.conflist): bridge (exec) + host-local ({})",
        if wasm.contains(&"host-local") {
            "wasm"
        } else {
            "exec"
        }
    );
    println!(
        "net1: default/macvlan-net: macvlan (exec) + host-local ({})",
        if wasm.contains(&"host-local") {
            "wasm"
        } else {
            "exec"
        }
    );
    println!(
        "net2: storage/storage-net: bridge (exec) + static (exec), then tuning ({})",
        if wasm.contains(&"tuning") {
            "wasm"
        } else {
            "exec"
        }
    );
    let conf = serde_json::to_vec_pretty(&conf)?;
    section("multus conf (stdin)");
    println!("{}", String::from_utf8_lossy(&conf));

    let netns = pod.path();
    let env = |cmd: &'static str| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "demo-container"),
            ("CNI_NETNS", netns.to_str().unwrap_or_default()),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo;K8S_POD_UID=demo-uid",
            ),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    };
    let run = |cmd: &'static str| -> Result<()> {
        let out = exec_cni(&multus, Some(&node), &env(cmd), &conf)?;
        println!("{cmd}: exit {:?}", out.status);
        if !out.stdout.is_empty() {
            println!("{}", serde_json::to_string_pretty(&out.json())?);
        }
        if !out.ok() {
            bail!("multus {cmd} failed: {} {}", out.stdout, out.stderr);
        }
        Ok(())
    };

    section("ADD (result printed by multus: the cluster network's, as the conf's cniVersion)");
    run("ADD")?;
    section(&format!(
        "pod netns {}: interfaces and addresses",
        pod.name()
    ));
    print!("{}", pod.ip(&["-br", "addr"])?);
    section("k8s.v1.cni.cncf.io/network-status, as written to the pod");
    println!(
        "{}",
        api.annotation("default", "demo", "k8s.v1.cni.cncf.io/network-status")
            .context("multus wrote no network-status")?
    );
    section("pod routes");
    print!("{}", pod.ip(&["route"])?);
    section("state on the node");
    show(&data, &cni_dir);

    section("CHECK");
    run("CHECK")?;
    section("DEL");
    run("DEL")?;
    section("after DEL");
    println!("pod links: {}", pod.links()?.join(", "));
    show(&data, &cni_dir);
    section("DEL again (idempotent)");
    run("DEL")?;

    let leftovers: Vec<String> = files_under(&data)
        .into_iter()
        .filter(|f| !f.ends_with("/lock") && !f.contains("last_reserved_ip"))
        .collect();
    if pod.links()? != ["lo"] || !leftovers.is_empty() || !files_under(&cni_dir).is_empty() {
        bail!(
            "something was left behind: links {:?}, files {leftovers:?}",
            pod.links()?
        );
    }
    println!("\nnothing left: the pod has only lo, no IP reservations, no cache.");
    Ok(())
}

fn show(data: &Path, cni_dir: &Path) {
    println!("host-local files: {:?}", files_under(data));
    println!("multus cache:     {:?}", files_under(cni_dir));
}

//! multus under a real containerd's CRI, driven as the kubelet drives it:
//! RunPodSandbox, StopPodSandbox, RemovePodSandbox over the CRI socket. The
//! sequence the stand-ins never showed: containerd repeats the CNI DEL at
//! RemovePodSandbox after StopPodSandbox removed the netns (with no
//! CNI_NETNS), and a wasm interface plugin's DEL then failed, so the
//! sandbox could never be removed (issue 20).

mod common;

use common::*;
use multus_testbed::cri::Containerd;
use serde_json::json;

#[test]
fn a_pod_on_wasm_interface_plugins_runs_stops_and_is_removed() {
    let node = Node::new();
    node.install_wasm(&["bridge", "host-local"]);
    let cni_bin = node.dir.path().join("cni-bin");
    let cni_conf = node.dir.path().join("cni-conf");
    std::fs::create_dir_all(&cni_bin).unwrap();
    std::fs::create_dir_all(&cni_conf).unwrap();
    // A link, so multus finds multusctl beside itself (to compile modules
    // once), as the installer places them.
    std::os::unix::fs::symlink(MULTUS, cni_bin.join("multus")).unwrap();
    // containerd brings the pod's lo up with the reference loopback plugin.
    std::fs::copy(plugins().join("loopback"), cni_bin.join("loopback")).unwrap();
    let cluster = json!({"cniVersion": "1.0.0", "name": "cri-cluster", "plugins": [
        {"type": "bridge", "bridge": "cri0", "isDefaultGateway": true,
         "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                  "ranges": [[{"subnet": "10.77.0.0/24"}]]}}]});
    let mut conf = node.with_wasm(multus_testbed::confs::multus_delegates(
        &[cluster],
        &node.cni_dir(),
        &plugins(),
    ));
    conf["wasmPlugins"] = json!({"bridge": {"hostNetns": true}});
    std::fs::write(cni_conf.join("00-multus.conf"), bytes(&conf)).unwrap();
    let containerd = Containerd::start(
        &node.dir.path().join("containerd"),
        &node.ns,
        &cni_bin,
        &cni_conf,
        &[],
        "info",
    )
    .unwrap();
    containerd.import_pause().unwrap();
    let mut cri = containerd.cri().unwrap();
    for i in 0..2 {
        let id = cri
            .run_pod("default", &format!("cri-{i}"), &format!("uid-cri-{i}"))
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log()));
        assert_eq!(
            node.reservations("cri-cluster").len(),
            1,
            "{}",
            containerd.log()
        );
        cri.stop_pod(&id)
            .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", containerd.log()));
        cri.remove_pod(&id)
            .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", containerd.log()));
        assert!(node.reservations("cri-cluster").is_empty());
        assert!(node.cache_files().is_empty(), "{:?}", node.cache_files());
        assert!(node.veths().is_empty(), "{:?}", node.veths());
    }
    let log = containerd.log();
    assert!(
        !log.contains("failed to destroy network") && !log.contains("failed to teardown"),
        "{log}"
    );
}

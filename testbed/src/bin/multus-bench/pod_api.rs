//! Where the CRI bench's pods and NADs live: the in-test API server, or a
//! real kube-apiserver + etcd (the cluster kit's `k8s/up.sh`, started in
//! the bench's network namespace so its loopback stays the bench's own).
//! A real one costs what an in-process one hides: TLS, authentication,
//! admission and etcd on every call.

use anyhow::{Context, Result};
use kube::api::{ApiResource, DynamicObject};
use multus::k8s::client::Kube;
use multus_testbed::kit::Kit;
use multus_testbed::kube_api::{FakeKubeApi, NODE};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What the bench needs of an API server.
pub trait PodApi: Sync {
    /// A label for the tables.
    fn label(&self) -> &str;
    fn add_nad(&self, ns: &str, name: &str, config: &str) -> Result<()>;
    /// Creates the pod on this node; its UID.
    fn add_pod(&self, ns: &str, name: &str, annotations: &[(&str, &str)]) -> Result<String>;
    fn annotation(&self, ns: &str, name: &str, key: &str) -> Option<String>;
    /// A kubeconfig with multus's rights.
    fn kubeconfig(&self) -> PathBuf;
    /// A service account's directory (token, ca.crt, namespace) with
    /// multus's rights, for a client of in-cluster config.
    fn service_account(&self) -> PathBuf;
    /// `KUBERNETES_SERVICE_HOST` and `_PORT`.
    fn service(&self) -> (String, u16);
}

impl PodApi for FakeKubeApi {
    fn label(&self) -> &str {
        "the in-test API server (in-process)"
    }

    fn add_nad(&self, ns: &str, name: &str, config: &str) -> Result<()> {
        FakeKubeApi::add_nad(self, ns, name, Some(config), &[]);
        Ok(())
    }

    fn add_pod(&self, ns: &str, name: &str, annotations: &[(&str, &str)]) -> Result<String> {
        let uid = format!("uid-{name}");
        FakeKubeApi::add_pod(self, ns, name, &uid, annotations, &[]);
        Ok(uid)
    }

    fn annotation(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        FakeKubeApi::annotation(self, ns, name, key)
    }

    fn kubeconfig(&self) -> PathBuf {
        FakeKubeApi::kubeconfig(self)
    }

    fn service_account(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn service(&self) -> (String, u16) {
        (self.addr.ip().to_string(), self.addr.port())
    }
}

/// The kit's etcd and kube-apiserver, stopped on drop.
pub struct KitApi {
    kit: Kit,
    /// The admin's client (one call at a time: it is not `Sync`).
    admin: std::sync::Mutex<Kube>,
    sa: tempfile::TempDir,
}

fn pods() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Pod".into(),
        plural: "pods".into(),
    }
}

impl KitApi {
    /// `kit`: the cluster kit's directory; started fresh and seeded.
    pub fn start(kit: &Path) -> Result<Self> {
        let kit = Kit::start(kit)?;
        let admin = kit.admin()?;
        let sa = tempfile::tempdir()?;
        let kubeconfig: serde_json::Value = serde_yaml_ng::from_slice(
            &std::fs::read(kit.multus_kubeconfig()).context("the kit's multus.kubeconfig")?,
        )?;
        let token = kubeconfig["users"][0]["user"]["token"]
            .as_str()
            .context("a token in the kit's multus.kubeconfig")?;
        std::fs::write(sa.path().join("token"), token)?;
        std::fs::copy(kit.k8s.join("pki/ca.crt"), sa.path().join("ca.crt"))?;
        std::fs::write(sa.path().join("namespace"), "kube-system")?;
        Ok(Self {
            kit,
            admin: std::sync::Mutex::new(admin),
            sa,
        })
    }
}

impl PodApi for KitApi {
    fn label(&self) -> &str {
        "a real kube-apiserver + etcd (the cluster kit's up.sh)"
    }

    fn add_nad(&self, ns: &str, name: &str, config: &str) -> Result<()> {
        let nad: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": ns}, "spec": {"config": config}}))?;
        self.admin.lock().unwrap().create_nad(&nad)?;
        Ok(())
    }

    fn add_pod(&self, ns: &str, name: &str, annotations: &[(&str, &str)]) -> Result<String> {
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let pod: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "registry.local/pause:3.10"}]}}))?;
        let made = self
            .admin
            .lock()
            .unwrap()
            .create_object(&pods(), ns, &pod)?;
        made.metadata.uid.context("the created pod's uid")
    }

    fn annotation(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        self.admin
            .lock()
            .unwrap()
            .get_pod(ns, name)
            .ok()?
            .metadata
            .annotations?
            .remove(key)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.kit.multus_kubeconfig()
    }

    fn service_account(&self) -> PathBuf {
        self.sa.path().to_path_buf()
    }

    fn service(&self) -> (String, u16) {
        ("127.0.0.1".into(), 6443)
    }
}

//! Device IDs for SR-IOV and other device-plugin networks: the kubelet's
//! pod-resources API (gRPC v1 on a unix socket) says which devices of which
//! resource the pod was given; each attachment of a resource takes the next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tonic::transport::{Endpoint, Uri};

use crate::cni::{CniError, Code};

pub mod proto {
    tonic::include_proto!("v1");
}

use proto::pod_resources_lister_client::PodResourcesListerClient;
use proto::{GetPodResourcesRequest, ListPodResourcesRequest, PodResources};

/// Answers of a whole node's List can be large (upstream allows 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// The pod's devices by resource name, each list sorted.
pub type Devices = BTreeMap<String, Vec<String>>;

fn err(socket: &Path, msg: impl std::fmt::Display) -> CniError {
    CniError::new(
        Code::TryAgainLater,
        format!("kubelet pod-resources API at {}: {msg}", socket.display()),
    )
}

/// Asks the kubelet for the pod's devices: `Get` for this one pod, or, on a
/// kubelet without it, `List` filtered to the pod.
pub fn query(
    socket: &Path,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Devices, CniError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(socket, e))?;
    let path = socket.to_path_buf();
    let pod = rt.block_on(async {
        tokio::time::timeout(timeout, fetch(path, namespace, name))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
    });
    let pod = pod.map_err(|m| err(socket, m))?;
    let mut out = Devices::new();
    for c in pod.iter().flat_map(|p| &p.containers) {
        for d in &c.devices {
            out.entry(d.resource_name.clone())
                .or_default()
                .extend(d.device_ids.iter().cloned());
        }
    }
    for ids in out.values_mut() {
        ids.sort();
        ids.dedup();
    }
    Ok(out)
}

async fn fetch(path: PathBuf, namespace: &str, name: &str) -> Result<Option<PodResources>, String> {
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://[::1]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut client = PodResourcesListerClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let get = client
        .get(GetPodResourcesRequest {
            pod_name: name.to_string(),
            pod_namespace: namespace.to_string(),
        })
        .await;
    match get {
        Ok(r) => Ok(r.into_inner().pod_resources),
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            let all = client
                .list(ListPodResourcesRequest {})
                .await
                .map_err(|s| format!("List: {}", s.message()))?;
            Ok(all
                .into_inner()
                .pod_resources
                .into_iter()
                .find(|p| p.name == name && p.namespace == namespace))
        }
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(format!("Get: {:?}: {}", s.code(), s.message())),
    }
}

/// Hands out the pod's devices, one per attachment, in sorted order.
#[derive(Debug, Default)]
pub struct Allocator {
    devices: Devices,
    next: BTreeMap<String, usize>,
}

impl Allocator {
    pub fn new(devices: Devices) -> Self {
        Self {
            devices,
            next: BTreeMap::new(),
        }
    }

    pub fn take(&mut self, resource: &str, network: &str) -> Result<String, CniError> {
        let ids = self
            .devices
            .get(resource)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let n = self.next.entry(resource.to_string()).or_default();
        let id = ids.get(*n).cloned().ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "network {network}: resource {:?}: the kubelet assigned the pod {} device(s) of it and {} attachment(s) already use them; request one per attachment in the pod's resource limits",
                    multus_host_functions::text::quoted(resource),
                    ids.len(),
                    *n
                ),
            )
        })?;
        *n += 1;
        Ok(id)
    }
}

/// Where multus puts an attachment's device-info file (upstream's layout).
pub fn info_file(dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    dir.join("cni")
        .join(format!("{network}-{container_id}_{ifname}").replace('/', "-"))
}

/// The device plugin's device-info file for one device, if it wrote one.
pub fn plugin_info_file(dir: &Path, resource: &str, device_id: &str) -> PathBuf {
    dir.join("dp")
        .join(format!("{resource}-{device_id}-device.json").replace('/', "-"))
}

/// The capability arg naming an attachment's device-info file.
pub const INFO_FILE_KEY: &str = "CNIDeviceInfoFile";

fn info_file_of(caps: &Map<String, Value>) -> Option<&str> {
    caps.get(INFO_FILE_KEY).and_then(Value::as_str)
}

/// Seeds the attachment's device-info file (named in its capability args)
/// from the device plugin's `source`, so the delegate and network-status see
/// it (upstream's flow).
pub fn seed_info_file(source: Option<&Path>, caps: &Map<String, Value>) -> Result<(), CniError> {
    let (Some(src), Some(dst)) = (source, info_file_of(caps)) else {
        return Ok(());
    };
    if !src.exists() {
        return Ok(());
    }
    let dst = Path::new(dst);
    let io = |e: std::io::Error| {
        CniError::new(
            Code::Io,
            format!("device-info {} -> {}: {e}", src.display(), dst.display()),
        )
    };
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::copy(src, dst).map_err(io)?;
    Ok(())
}

/// The attachment's device-info file, when the device plugin or the
/// delegate wrote one.
pub fn read_info_file(caps: &Map<String, Value>) -> Option<Value> {
    let bytes = std::fs::read(info_file_of(caps)?).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes the attachment's device-info file once it is deleted.
pub fn remove_info_file(caps: &Map<String, Value>) {
    let Some(path) = info_file_of(caps) else {
        return;
    };
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = path, error = %e, "cannot remove device-info file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_per_attachment_in_sorted_order() {
        let mut a = Allocator::new(
            [(
                "intel.com/vf".to_string(),
                vec!["0000:03:00.2".to_string(), "0000:03:00.1".to_string()],
            )]
            .into_iter()
            .map(|(k, mut v)| {
                v.sort();
                (k, v)
            })
            .collect(),
        );
        assert_eq!(a.take("intel.com/vf", "ns/a").unwrap(), "0000:03:00.1");
        assert_eq!(a.take("intel.com/vf", "ns/b").unwrap(), "0000:03:00.2");
        let e = a.take("intel.com/vf", "ns/c").unwrap_err();
        assert!(
            e.msg.contains("ns/c") && e.msg.contains("2 device(s)"),
            "{}",
            e.msg
        );
        assert!(a
            .take("other/res", "ns/d")
            .unwrap_err()
            .msg
            .contains("0 device(s)"));
    }

    #[test]
    fn file_names() {
        let d = Path::new("/run/devinfo");
        assert_eq!(
            info_file(d, "ns/sriov", "cid", "net1"),
            Path::new("/run/devinfo/cni/ns-sriov-cid_net1")
        );
        assert_eq!(
            plugin_info_file(d, "intel.com/vf", "0000:03:00.1"),
            Path::new("/run/devinfo/dp/intel.com-vf-0000:03:00.1-device.json")
        );
    }
}

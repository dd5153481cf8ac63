//! A kubelet pod-resources server (gRPC v1 on a unix socket) for tests,
//! built from the same proto as the client. `with_get: false` behaves like a
//! kubelet that predates the `Get` call.

use std::io;
use std::path::{Path, PathBuf};

use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use super::background::Background;

mod proto {
    tonic::include_proto!("v1");
}

use proto::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use proto::{
    ContainerDevices, ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse,
    ListPodResourcesRequest, ListPodResourcesResponse, PodResources,
};

#[derive(Clone)]
struct Lister {
    pods: Vec<PodResources>,
    with_get: bool,
}

#[tonic::async_trait]
impl PodResourcesLister for Lister {
    async fn list(
        &self,
        _: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        Ok(Response::new(ListPodResourcesResponse {
            pod_resources: self.pods.clone(),
        }))
    }

    async fn get(
        &self,
        req: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        if !self.with_get {
            return Err(Status::unimplemented(
                "Get is not enabled (KubeletPodResourcesGet)",
            ));
        }
        let r = req.into_inner();
        let pod = self
            .pods
            .iter()
            .find(|p| p.name == r.pod_name && p.namespace == r.pod_namespace)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!("pod {}/{} not found", r.pod_namespace, r.pod_name))
            })?;
        Ok(Response::new(GetPodResourcesResponse {
            pod_resources: Some(pod),
        }))
    }
}

/// One pod's devices: (namespace, name, [(resource, [device ids])]).
pub type PodDevices<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [&'a str])]);

pub struct FakePodResources {
    pub socket: PathBuf,
    _server: Background,
}

impl FakePodResources {
    pub fn start(socket: &Path, pods: &[PodDevices<'_>], with_get: bool) -> io::Result<Self> {
        let pods = pods
            .iter()
            .map(|(ns, name, devices)| PodResources {
                name: name.to_string(),
                namespace: ns.to_string(),
                containers: vec![ContainerResources {
                    name: "main".into(),
                    devices: devices
                        .iter()
                        .map(|(res, ids)| ContainerDevices {
                            resource_name: res.to_string(),
                            device_ids: ids.iter().map(|s| s.to_string()).collect(),
                        })
                        .collect(),
                }],
            })
            .collect();
        let listener = std::os::unix::net::UnixListener::bind(socket)?;
        listener.set_nonblocking(true)?;
        let svc = PodResourcesListerServer::new(Lister { pods, with_get });
        let server = Background::spawn(move |stop| async move {
            let l = tokio::net::UnixListener::from_std(listener).expect("listener");
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(UnixListenerStream::new(l), async {
                    let _ = stop.await;
                })
                .await;
        });
        Ok(Self {
            socket: socket.to_path_buf(),
            _server: server,
        })
    }
}

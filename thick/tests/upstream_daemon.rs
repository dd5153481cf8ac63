//! Our `multus-shim` against a server that answers as upstream's
//! `multus-daemon` (v4.3.0) does: `{"Result": ..}` on 200, an empty 200 for
//! commands without a result, a CNI error JSON on 400, and plain text on 400
//! when the error is not a CNI error (Go's `http.Error`). And the request the
//! shim sends is the one upstream's daemon decodes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use multus_testbed::background::Background;
use multus_testbed::exec_cni;
use multus_testbed::node::assert_cni_error;
use serde_json::{json, Value};

const SHIM: &str = env!("CARGO_BIN_EXE_multus-shim");

const RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/var/run/netns/p"}],"ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0}]}"#;

/// Upstream's answer to a `/cni` request of `command`.
fn answer(command: &str) -> (u16, &'static str, String) {
    match command {
        "ADD" => (200, "application/json", format!(r#"{{"Result":{RESULT}}}"#)),
        "CHECK" | "DEL" => (200, "application/json", String::new()),
        "STATUS" => (
            400,
            "application/json",
            r#"{"code":50,"msg":"plugin not available","details":"cluster network down"}"#.into(),
        ),
        _ => (
            400,
            "text/plain; charset=utf-8",
            "GC: failed to get the k8s client: no kubeconfig\n".into(),
        ),
    }
}

fn serve(socket: &Path, seen: Arc<Mutex<Vec<(String, Value)>>>) -> Background {
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    Background::spawn(move |mut stop| async move {
        let listener = tokio::net::UnixListener::from_std(listener).unwrap();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                conn = listener.accept() => {
                    let Ok((stream, _)) = conn else { continue };
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req.into_body().collect().await?.to_bytes();
                                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let command = v["env"]["CNI_COMMAND"].as_str().unwrap_or_default().to_string();
                                seen.lock().unwrap().push((path.clone(), v));
                                let (code, ty, text) = match path.as_str() {
                                    "/readyz" | "/healthz" => (200, "text/plain", String::new()),
                                    _ => answer(&command),
                                };
                                Ok::<_, hyper::Error>(Response::builder()
                                    .status(code)
                                    .header("content-type", ty)
                                    .body(Full::new(Bytes::from(text)))
                                    .unwrap())
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    })
}

#[test]
fn our_shim_against_upstreams_daemon_answers() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _server = serve(&dir.path().join("multus.sock"), seen.clone());
    let conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        "daemonSocketDir": dir.path(), "daemonReadyTimeoutMs": 2000,
        "clusterNetwork": "/etc/cni/net.d/10-flannel.conflist"});
    let stdin = serde_json::to_vec(&conf).unwrap();
    let env = |cmd: &'static str| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    };
    let run = |cmd| exec_cni(Path::new(SHIM), None, &env(cmd), &stdin).unwrap();

    let add = run("ADD");
    assert!(add.ok(), "{} {}", add.stdout, add.stderr);
    assert_eq!(
        add.json(),
        serde_json::from_str::<Value>(RESULT).unwrap(),
        "the Result, printed as is"
    );
    let check = run("CHECK");
    assert!(check.ok() && check.stdout.is_empty(), "{}", check.stdout);
    // A CNI error from the daemon is the shim's error, unchanged.
    let status = run("STATUS");
    let e = assert_cni_error(&status, 50);
    assert_eq!(e, "plugin not available");
    assert_eq!(status.json()["details"], "cluster network down");
    // Go's plain-text http.Error: a CNI error naming what the daemon said.
    let gc = run("GC");
    let e = assert_cni_error(&gc, 999);
    assert!(
        e.contains("answered 400") && e.contains("no kubeconfig"),
        "{e}"
    );

    // What upstream's daemon decodes: POST /cni, the shim's whole
    // environment, the conf as base64 of the exact stdin bytes.
    let seen = seen.lock().unwrap();
    let cni: Vec<&Value> = seen
        .iter()
        .filter(|(p, _)| p == "/cni")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(cni.len(), 4);
    let add_req = cni[0];
    assert_eq!(add_req["env"]["CNI_COMMAND"], "ADD");
    assert_eq!(
        add_req["env"]["CNI_ARGS"],
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    );
    assert!(add_req["env"]["PATH"].is_string(), "the whole environment");
    let config = base64::engine::general_purpose::STANDARD
        .decode(add_req["config"].as_str().unwrap())
        .unwrap();
    assert_eq!(config, stdin);
    assert!(add_req.get("interfaceAttributes").is_none());
    // Sent at once (upstream's shim asks /readyz first; ours waits only
    // when nothing ran), and the DEL asked /healthz.
    assert_eq!(seen.iter().filter(|(p, _)| p == "/readyz").count(), 0);
}

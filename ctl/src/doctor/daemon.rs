//! Thick mode: the daemon behind the shim conf, asked over its socket as
//! the shim asks it (`/healthz`, then `/readyz`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::runtime_conf::Ours;
use super::{Finding, Node};

const CHECK: &str = "daemon";
const SOCKET: &str = "multus.sock";

/// The status code of `GET path` on the socket: an HTTP/1.1 request with
/// `Connection: close`, its status line read back.
fn get(socket: &Path, path: &str) -> Result<u16, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    let budget = Some(Duration::from_secs(2));
    s.set_read_timeout(budget)
        .and(s.set_write_timeout(budget))
        .map_err(|e| e.to_string())?;
    // One write: a server may answer (and close) once it has the head.
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: multus-daemon\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("no answer within 2 s ({e})"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                line.lines().next().unwrap_or_default()
            )
        })
}

pub fn check(node: &Node, ours: &Ours, out: &mut Vec<Finding>) {
    let Some(dir) = &ours.daemon_socket_dir else {
        return;
    };
    let shown = dir.join(SOCKET);
    let socket = node.host(&shown);
    match get(&socket, "/healthz") {
        Ok(200) => {}
        Ok(code) => {
            out.push(Finding::error(
                CHECK,
                format!("{} answers /healthz with {code}", shown.display()),
                "read the daemon's log: kubectl logs -n kube-system <the multus pod on this node>",
            ));
            return;
        }
        Err(e) => {
            out.push(Finding::error(
                CHECK,
                format!("no daemon answers on {}: {e}; ADDs wait for it, DELs run without it", shown.display()),
                "check the multus-daemon pod on this node (kubectl get pods -n kube-system -o wide); the socket dir must be the host's",
            ));
            return;
        }
    }
    match get(&socket, "/readyz") {
        Ok(200) => out.push(Finding::ok(CHECK, format!("{} healthy and ready", shown.display()))),
        Ok(code) => out.push(Finding::warning(
            CHECK,
            format!("{} is up but not ready ({code}): it is stopping, so new ADDs wait for its successor", shown.display()),
            "if this lasts, the daemon is stuck draining: restart its pod",
        )),
        Err(e) => out.push(Finding::warning(
            CHECK,
            format!("{} answered /healthz, then not /readyz: {e}", shown.display()),
            "the daemon may be overloaded: see multus_requests_waiting on its metrics port",
        )),
    }
}

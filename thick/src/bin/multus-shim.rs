//! `multus-shim`: what the runtime execs in thick mode. It forwards the
//! request to `multus-daemon`; when the daemon cannot be reached for a DEL
//! it runs the DEL itself through the thin `multus` beside it, so a daemon
//! restart never leaks a pod's interfaces and IPs (upstream returns
//! success and leaks). `#![no_main]`: see `multus::entry`.
#![no_main]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use multus::cni::{version, CniError, Code};
use multus::outcome::{self, Outcome};
use multus_thick::client;
use multus_thick::config::DEFAULT_SOCKET_DIR;
use multus_thick::protocol::{self, PATH_CNI, PATH_HEALTHZ, PROBE_TIMEOUT};
use serde_json::Value;

/// The shim's keys of its conf.
struct ShimConf {
    socket: PathBuf,
    /// How long ADD/CHECK/GC/STATUS wait for `/readyz` (upstream: 60 s).
    ready_timeout: Duration,
    /// How long the shim waits for the daemon's answer to the request
    /// itself (ours; the kubelet's own CRI deadline is 2 min).
    request_timeout: Duration,
}

fn shim_conf(stdin: &[u8]) -> ShimConf {
    let v: Value = serde_json::from_slice(stdin).unwrap_or(Value::Null);
    let dir = v["daemonSocketDir"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SOCKET_DIR);
    ShimConf {
        socket: Path::new(dir).join(protocol::SOCKET),
        ready_timeout: Duration::from_millis(v["daemonReadyTimeoutMs"].as_u64().unwrap_or(60_000)),
        request_timeout: Duration::from_millis(
            v["daemonRequestTimeoutMs"].as_u64().unwrap_or(120_000),
        ),
    }
}

fn fail(code: Code, msg: String, stdin: &[u8]) -> Outcome {
    outcome::failure(&CniError::new(code, msg), &outcome::error_version(stdin))
}

/// DEL without the daemon: the thin `multus` beside this binary, same
/// environment and stdin.
fn del_alone(stdin: &[u8], why: &str) -> Outcome {
    let me = std::env::current_exe().unwrap_or_default();
    let thin = me.parent().unwrap_or(Path::new("/")).join("multus");
    eprintln!(
        "multus-shim: multus-daemon unreachable ({why}); running DEL with {}",
        thin.display()
    );
    let child = std::process::Command::new(&thin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return fail(
                Code::TryAgainLater,
                format!(
                    "multus-daemon unreachable ({why}) and {} cannot run: {e}",
                    thin.display()
                ),
                stdin,
            )
        }
    };
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(stdin);
    }
    match child.wait_with_output() {
        Ok(o) => Outcome {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            status: o.status.code().unwrap_or(1),
        },
        Err(e) => fail(
            Code::Io,
            format!("waiting for {}: {e}", thin.display()),
            stdin,
        ),
    }
}

async fn run(stdin: Vec<u8>) -> Outcome {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command == "VERSION" {
        return outcome::version_info();
    }
    let conf = shim_conf(&stdin);
    if command == "DEL" {
        // A daemon that cannot answer its health probe in time (wedged,
        // not just gone) is as unreachable as a closed socket: DEL alone.
        let health = client::call(&conf.socket, "GET", PATH_HEALTHZ, Vec::new(), PROBE_TIMEOUT);
        if let Err(e) = health.await {
            return del_alone(&stdin, &format!("{}: {e}", conf.socket.display()));
        }
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let body = serde_json::to_vec(&protocol::Request {
        env,
        config: stdin.clone(),
        interface_attributes: None,
    })
    .expect("JSON values serialize");
    // Upstream's shim asks `/readyz` before each request; ours sends it and
    // waits the same way (every 100 ms, up to `daemonReadyTimeoutMs`) only
    // when nothing ran: no socket yet, nothing listening, or the daemon's
    // 503 "not ready". One round trip per pod instead of two.
    let until = Instant::now() + conf.ready_timeout;
    let answer = loop {
        let answer = client::call(
            &conf.socket,
            "POST",
            PATH_CNI,
            body.clone(),
            conf.request_timeout,
        )
        .await;
        let why = match &answer {
            Ok((503, b)) if command != "DEL" => serde_json::from_slice::<Value>(b)
                .ok()
                .and_then(|v| v["msg"].as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(b).into_owned()),
            Err(e)
                if command != "DEL"
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
            {
                e.to_string()
            }
            _ => break answer,
        };
        if Instant::now() >= until {
            return fail(
                Code::TryAgainLater,
                format!(
                    "multus-daemon at {} not ready after {} ms: {why}",
                    conf.socket.display(),
                    conf.ready_timeout.as_millis()
                ),
                &stdin,
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    match answer {
        Ok((200, b)) if b.is_empty() => Outcome {
            stdout: String::new(),
            status: 0,
        },
        Ok((200, b)) => match serde_json::from_slice::<protocol::Response>(&b) {
            Ok(r) => Outcome {
                stdout: r.result.to_string(),
                status: 0,
            },
            Err(e) => fail(Code::Decode, format!("multus-daemon's answer: {e}"), &stdin),
        },
        Ok((_, b))
            if serde_json::from_slice::<Value>(&b).is_ok_and(|v| v.get("code").is_some()) =>
        {
            // Upstream's daemon sends {code, msg, details}; the spec's error
            // output also names its version.
            let mut e: Value = serde_json::from_slice(&b).expect("parsed in the guard");
            if e.get("cniVersion").is_none() {
                e["cniVersion"] = outcome::error_version(&stdin).into();
            }
            Outcome {
                stdout: e.to_string(),
                status: 1,
            }
        }
        Ok((code, b)) => fail(
            Code::Internal,
            format!(
                "multus-daemon answered {code}: {}",
                String::from_utf8_lossy(&b).trim()
            ),
            &stdin,
        ),
        // The daemon may still be running this request: a DEL alone now
        // would race it, so the runtime is told to retry.
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => fail(
            Code::TryAgainLater,
            format!("multus-daemon at {}: {e}", conf.socket.display()),
            &stdin,
        ),
        // The daemon went away between the health check and the request.
        Err(e) if command == "DEL" => del_alone(&stdin, &e.to_string()),
        Err(e) => fail(
            Code::TryAgainLater,
            format!("multus-daemon at {}: {e}", conf.socket.display()),
            &stdin,
        ),
    }
}

#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    multus::entry::run(|| {
        if std::env::var_os("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
            eprintln!("multus-shim: forwards CNI requests to multus-daemon v{}\nCNI protocol versions supported: {}", env!("CARGO_PKG_VERSION"), version::SUPPORTED.join(", "));
            return 0;
        }
        let mut stdin = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut stdin);
        let out = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(run(stdin));
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.stdout.as_bytes());
        let _ = stdout.flush();
        std::process::exit(out.status);
    })
}

//! The daemon's HTTP server on its unix socket: `/cni` runs the request
//! exactly as the thin `multus` would (the same code), `/delegate` one
//! network's hot-plug, `/healthz` answers while the process is up,
//! `/readyz` until SIGTERM (and not while `connectionLimit` requests run on
//! past their deadline); the metrics port serves `/metrics` and the two
//! probes. A request is answered within `requestTimeoutMs` of its
//! admission: past it, with an error, its admission turn going to the next
//! request while its work (which cannot be stopped) keeps the container's
//! turn until it ends.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use multus::cni::{version, CniArgs, CniEnv, CniError, Code};
use multus::invoke::pod_writes::AfterResult;
use multus::outcome;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use crate::admit::Admission;
use crate::cluster::Connector;
use crate::config::DaemonConfig;
use crate::metrics::{CommandLabels, Metrics, RequestLabels};
use crate::per_container::PerContainer;
use crate::protocol::{self, PATH_CNI, PATH_DELEGATE, PATH_HEALTHZ, PATH_READYZ};

pub struct Daemon {
    pub config: DaemonConfig,
    pub admission: Admission,
    /// False once the daemon is stopping: `/readyz` fails, shims wait.
    pub ready: AtomicBool,
    pub metrics: Arc<Metrics>,
    /// The API client every request uses.
    pub cluster: Connector,
    /// One request at a time per container.
    pub containers: PerContainer,
}

impl Daemon {
    pub fn new(config: DaemonConfig, metrics: Arc<Metrics>, cluster: Connector) -> Arc<Self> {
        let admission = Admission::new(config.connection_limit, config.queue_timeout);
        Arc::new(Self {
            config,
            admission,
            ready: AtomicBool::new(true),
            metrics,
            cluster,
            containers: PerContainer::default(),
        })
    }

    /// Why the daemon is not ready, if it is not: `/readyz`'s answer, and
    /// what a shim's ADD, CHECK, STATUS or GC is told instead of running.
    fn unready(&self) -> Option<String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Some("stopping".into());
        }
        self.admission.saturated()
    }
}

/// Binds `<socketDir>/multus.sock`: the dir made 0700, a stale socket
/// replaced, the socket 0600.
pub fn bind(config: &DaemonConfig) -> std::io::Result<tokio::net::UnixListener> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.socket_dir)?;
    std::fs::set_permissions(&config.socket_dir, std::fs::Permissions::from_mode(0o700))?;
    let path = config.socket();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// Accepts connections from `accept` and serves each with `route` until
/// `stop` resolves: the socket server and the metrics server alike.
async fn serve_with<S, A, AF, R, RF>(
    daemon: Arc<Daemon>,
    mut accept: A,
    route: R,
    stop: impl std::future::Future<Output = ()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: FnMut() -> AF,
    AF: std::future::Future<Output = std::io::Result<S>>,
    R: Fn(Arc<Daemon>, Request<Incoming>) -> RF + Copy + Send + Sync + 'static,
    RF: std::future::Future<Output = Result<Response<Full<Bytes>>, hyper::Error>> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            conn = accept() => {
                let Ok(stream) = conn else { continue };
                let d = daemon.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| route(d.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(protocol::READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(error = %e, "connection");
                    }
                });
            }
        }
    }
}

/// Serves the shim protocol on `listener` until `stop` resolves.
pub async fn serve(
    daemon: Arc<Daemon>,
    listener: tokio::net::UnixListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let accept = || async { listener.accept().await.map(|(s, _)| s) };
    serve_with(daemon, accept, handle, stop).await;
}

/// Serves `GET /metrics` on `listener` until `stop` resolves.
pub async fn serve_metrics(
    daemon: Arc<Daemon>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let accept = || async { listener.accept().await.map(|(s, _)| s) };
    serve_with(daemon, accept, metrics, stop).await;
}

async fn metrics(
    daemon: Arc<Daemon>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if let Some(r) = probe(&daemon, &req) {
        return Ok(r);
    }
    Ok(if req.uri().path() == "/metrics" {
        Response::builder()
            .header(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(Full::new(Bytes::from(daemon.metrics.render())))
            .expect("a valid response")
    } else {
        reply(StatusCode::NOT_FOUND, Vec::new())
    })
}

fn reply(code: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn cni_error(e: &CniError) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        outcome::failure(e, version::CURRENT).stdout.into_bytes(),
    )
}

/// `/healthz` (up) and `/readyz` (until SIGTERM, and while fewer than
/// `connectionLimit` requests run on past their deadline), on the socket
/// for the shims and on the metrics port for the kubelet's probes.
fn probe(daemon: &Daemon, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    if !matches!(req.method(), &Method::GET | &Method::POST) {
        return None;
    }
    match req.uri().path() {
        PATH_HEALTHZ => Some(reply(StatusCode::OK, Vec::new())),
        PATH_READYZ => Some(match daemon.unready() {
            None => reply(StatusCode::OK, Vec::new()),
            Some(why) => reply(StatusCode::INTERNAL_SERVER_ERROR, why.into_bytes()),
        }),
        _ => None,
    }
}

async fn handle(
    daemon: Arc<Daemon>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if let Some(r) = probe(&daemon, &req) {
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    Ok(match (path.as_str(), &method) {
        (PATH_CNI | PATH_DELEGATE, &Method::POST) => {
            let kind = if path == PATH_CNI {
                Kind::Cni
            } else {
                Kind::Delegate
            };
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return Ok(cni_error(&e)),
            };
            match serde_json::from_slice::<protocol::Request>(&body) {
                Ok(r) => cni(daemon, r, kind).await,
                Err(e) => cni_error(&CniError::new(
                    Code::Decode,
                    format!("multus-daemon: the request is not a shim request: {e}"),
                )),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            format!("no {method} {path}").into_bytes(),
        ),
    })
}

/// The request body, at most `MAX_REQUEST_BYTES` and within
/// `READ_TIMEOUT`, read before the request takes an admission turn.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, CniError> {
    let limited = Limited::new(req.into_body(), protocol::MAX_REQUEST_BYTES);
    match tokio::time::timeout(protocol::READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(CniError::new(
            Code::Decode,
            format!(
                "multus-daemon: the request is larger than {} bytes",
                protocol::MAX_REQUEST_BYTES
            ),
        )),
        Ok(Err(e)) => Err(CniError::new(
            Code::Io,
            format!("multus-daemon: reading the request: {e}"),
        )),
        Err(_) => Err(CniError::new(
            Code::Io,
            format!(
                "multus-daemon: the request body did not arrive within {} s",
                protocol::READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Which endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/cni`: the pod's whole multus invocation.
    Cni,
    /// `/delegate`: one network hot-plugged into a running pod.
    Delegate,
}

/// Counts a request's answer in the metrics: by command and code, and its
/// latency from arrival.
#[derive(Clone)]
struct Tally {
    metrics: Arc<Metrics>,
    command: String,
    started: Instant,
}

impl Tally {
    fn count(&self, code: u32) {
        let m = &self.metrics;
        m.requests
            .get_or_create(&RequestLabels {
                command: self.command.clone(),
                code: code.to_string(),
            })
            .inc();
        m.request_seconds
            .get_or_create(&CommandLabels {
                command: self.command.clone(),
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// A gauge raised while this is held.
struct Raised(Gauge<i64, AtomicI64>);

impl Raised {
    fn new(g: &Gauge<i64, AtomicI64>) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn cni(daemon: Arc<Daemon>, req: protocol::Request, kind: Kind) -> Response<Full<Bytes>> {
    let mut command = req.env.get("CNI_COMMAND").cloned().unwrap_or_default();
    // The shim sends ADD, CHECK, STATUS and GC without asking `/readyz`
    // first (a round trip per pod): an unready daemon says so here, and the
    // shim waits as it would have. A DEL (which must not wait) and
    // `/delegate` run as before.
    let unready = (kind == Kind::Cni && command != "DEL")
        .then(|| daemon.unready())
        .flatten();
    if let Some(why) = unready {
        // Not counted as a request: the shim asks again every 100 ms, as
        // its `/readyz` probes (never counted) did.
        let e = CniError::new(
            Code::TryAgainLater,
            format!("multus-daemon is not ready: {why}"),
        );
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            outcome::failure(&e, version::CURRENT).stdout.into_bytes(),
        );
    }
    if kind == Kind::Delegate {
        command = format!("delegate {command}");
    }
    let tally = Tally {
        metrics: daemon.metrics.clone(),
        command,
        started: Instant::now(),
    };
    let waiting = Raised::new(&tally.metrics.waiting);
    let container = req.env.get("CNI_CONTAINERID").cloned().unwrap_or_default();
    // The container's turn is bounded like admission: a request stuck
    // behind another for the same container is told to retry (code 11).
    let queue_timeout = daemon.config.queue_timeout;
    let turn = match tokio::time::timeout(queue_timeout, daemon.containers.turn(&container)).await {
        Ok(t) => t,
        Err(_) => {
            drop(waiting);
            tally.count(Code::TryAgainLater as u32);
            return cni_error(&CniError::new(
                Code::TryAgainLater,
                format!(
                    "multus-daemon: another request for container {container} is still running after {} ms",
                    queue_timeout.as_millis()
                ),
            ));
        }
    };
    let entered = daemon.admission.enter().await;
    drop(waiting);
    let permit = match entered {
        Ok(p) => p,
        Err(msg) => {
            tally.count(Code::TryAgainLater as u32);
            return cni_error(&CniError::new(Code::TryAgainLater, msg));
        }
    };
    // Admitted: from here the request runs to its answer or its deadline
    // even if the caller hangs up, so its turns are accounted for alike.
    let t = tally.clone();
    match tokio::spawn(admitted(daemon, req, kind, turn, permit, t)).await {
        Ok(resp) => resp,
        Err(e) => {
            tally.count(Code::Internal as u32);
            cni_error(&CniError::new(
                Code::Internal,
                format!("multus-daemon: the request failed: {e}"),
            ))
        }
    }
}

/// What a request's blocking work hands back: the answer, its CNI code,
/// the pod's writes that follow the answer, and the container's turn
/// (given back only when the work ends).
type Ran = (
    Response<Full<Bytes>>,
    u32,
    Vec<multus::invoke::pod_writes::Work>,
    Option<OwnedMutexGuard<()>>,
);

/// Runs an admitted request within `requestTimeoutMs` of its admission.
async fn admitted(
    daemon: Arc<Daemon>,
    req: protocol::Request,
    kind: Kind,
    turn: Option<OwnedMutexGuard<()>>,
    permit: OwnedSemaphorePermit,
    tally: Tally,
) -> Response<Full<Bytes>> {
    let pod = pod_of(&req.env);
    let container = req.env.get("CNI_CONTAINERID").cloned().unwrap_or_default();
    let running = Raised::new(&tally.metrics.in_flight);
    let d = daemon.clone();
    let mut work = tokio::task::spawn_blocking(move || -> Ran {
        let after = AfterResult::default();
        let (resp, code) = run(&d, req, kind, &after);
        (resp, code, after.take(), turn)
    });
    let deadline = daemon.config.request_timeout;
    let done = tokio::time::timeout(deadline, &mut work).await;
    drop(running);
    match done {
        Ok(Ok((resp, code, after, turn))) => {
            tally.count(code);
            // The pod's writes follow the answer, in the container's turn
            // (its DEL waits for them) and admitted (a stopping daemon
            // drains them).
            if !after.is_empty() {
                tokio::task::spawn_blocking(move || {
                    let _held = (turn, permit);
                    for w in after {
                        w();
                    }
                });
            }
            resp
        }
        Ok(Err(e)) => {
            tally.count(Code::Internal as u32);
            cni_error(&CniError::new(
                Code::Internal,
                format!("multus-daemon: the request failed: {e}"),
            ))
        }
        Err(_) => {
            // The work cannot be stopped (a delegate, a read, an API call
            // in a blocking thread): the runtime gets its answer now, the
            // next request gets this one's admission turn, and the
            // container's turn stays with the work (in its result) so the
            // container's DEL or retry never runs beside a half-done ADD.
            let e = CniError::new(
                Code::Internal,
                format!(
                    "multus-daemon: {} for pod {pod} (container {container}) did not finish within requestTimeoutMs ({} ms); it still runs, and the container's next request waits for it",
                    tally.command,
                    deadline.as_millis()
                ),
            );
            tracing::warn!(
                pod = %pod,
                container = %container,
                command = %tally.command,
                "request past its deadline: answered with an error; its admission turn is freed, the container's turn is held until it ends"
            );
            let abandoned = daemon.admission.abandon(permit);
            let m = tally.metrics.clone();
            m.timed_out
                .get_or_create(&CommandLabels {
                    command: tally.command.clone(),
                })
                .inc();
            let still = Raised::new(&m.abandoned);
            tally.count(e.code);
            tokio::spawn(async move {
                // The pod's writes, if any, are dropped: the runtime was
                // told this request failed.
                let ended = work.await;
                drop((abandoned, still));
                tracing::warn!(
                    pod = %pod,
                    container = %container,
                    command = %tally.command,
                    status = ended.as_ref().map_or(Code::Internal as u32, |r| r.1),
                    duration_ms = format!("{:.2}", tally.started.elapsed().as_secs_f64() * 1e3),
                    "a request answered at its deadline has ended; the container's turn is free"
                );
            });
            cni_error(&e)
        }
    }
}

/// The pod a request is for, `namespace/name` from its `CNI_ARGS` (`-` for
/// what they lack).
fn pod_of(env: &BTreeMap<String, String>) -> String {
    let args = CniArgs::parse(env.get("CNI_ARGS").map_or("", String::as_str)).unwrap_or_default();
    let arg = |k: &str| args.get(k).unwrap_or("-").to_string();
    format!("{}/{}", arg("K8S_POD_NAMESPACE"), arg("K8S_POD_NAME"))
}

/// One request, run by the same code as the thin `multus`; the answer and
/// its CNI code (0 for success).
fn run(
    daemon: &Daemon,
    req: protocol::Request,
    kind: Kind,
    after: &AfterResult,
) -> (Response<Full<Bytes>>, u32) {
    let failed = |e: &CniError| (cni_error(e), e.code);
    let started = Instant::now();
    let mut env: BTreeMap<String, String> = req.env;
    // Upstream's daemon defaults the interface name.
    env.entry("CNI_IFNAME".into())
        .or_insert_with(|| "eth0".into());
    // Every line logged for this request names its pod and container.
    let span = tracing::info_span!(
        "request",
        pod = %pod_of(&env),
        container = %env.get("CNI_CONTAINERID").map_or("-", String::as_str),
    );
    let _in_request = span.enter();
    let conf = match kind {
        Kind::Cni => daemon
            .config
            .apply(&req.config)
            .map_err(|msg| CniError::new(Code::Decode, msg)),
        Kind::Delegate => daemon.config.delegate_conf(&req.config),
    };
    let conf = match conf {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let cni_env = match CniEnv::from_vars(|k| env.get(k).cloned()) {
        Ok(e) => e,
        Err(e) => return failed(&e),
    };
    let host = multus::app::Host {
        cluster: &daemon.cluster,
        chroot: daemon.config.chroot_dir.as_deref(),
        after_result: daemon.config.status_after_result.then_some(after),
    };
    let out = match kind {
        Kind::Cni => multus::app::run_with(&cni_env, &conf, &host),
        Kind::Delegate => {
            let a = req.interface_attributes.unwrap_or_default();
            let attrs = multus::invoke::hotplug::Attributes {
                ips: a.ips,
                mac: a.mac,
                cni_args: a.cni_args,
            };
            multus::app::delegate(&cni_env, &conf, &req.config, &attrs, &host)
        }
    };
    tracing::info!(
        command = %cni_env.command,
        status = out.status,
        duration_ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1e3),
        "request"
    );
    if out.status != 0 {
        let code = serde_json::from_str::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["code"].as_u64())
            .unwrap_or(Code::Internal as u64) as u32;
        return (
            reply(StatusCode::BAD_REQUEST, out.stdout.into_bytes()),
            code,
        );
    }
    if out.stdout.is_empty() {
        return (reply(StatusCode::OK, Vec::new()), 0);
    }
    match serde_json::from_str(&out.stdout) {
        Ok(result) => (
            reply(
                StatusCode::OK,
                serde_json::to_vec(&protocol::Response { result }).expect("JSON values serialize"),
            ),
            0,
        ),
        Err(e) => failed(&CniError::new(
            Code::Internal,
            format!("multus-daemon: an unreadable result: {e}"),
        )),
    }
}

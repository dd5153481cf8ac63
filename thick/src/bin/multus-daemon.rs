//! `multus-daemon -config FILE`: thick mode's node daemon (upstream's
//! binary name, flag and default config path).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multus_thick::api_access::{ApiAccess, SERVICE_ACCOUNT};
use multus_thick::cluster::{Cluster, Connector, Credentials};
use multus_thick::config::{DaemonConfig, DEFAULT_PATH};
use multus_thick::metrics::{Metrics, MetricsLayer};
use multus_thick::server::{self, Daemon};
use multus_thick::shim_conf;

/// Keeps `<cniConfigDir>/00-multus.conf` current (a changed master, a
/// deleted conf) until `stop`, then removes it, as upstream's daemon does.
fn keep_shim_conf(
    config: &DaemonConfig,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let (source, dir) = config.shim_conf.clone()?;
    let overrides = config.overrides.clone();
    let socket_dir = config.socket_dir.clone();
    Some(std::thread::spawn(move || {
        let mut said = String::new();
        while !stop.load(Ordering::Relaxed) {
            let now = match shim_conf::current(&source, &overrides, &socket_dir) {
                Ok(Some(bytes)) => match shim_conf::write(&dir, &bytes) {
                    Ok(true) => {
                        tracing::info!(conf = %dir.join(shim_conf::FILE).display(), "wrote the shim conf");
                        String::new()
                    }
                    Ok(false) => String::new(),
                    Err(e) => format!("writing {}: {e}", dir.join(shim_conf::FILE).display()),
                },
                Ok(None) => format!("waiting for a master CNI conf ({source:?})"),
                Err(e) => e,
            };
            // Say a lasting condition once.
            if !now.is_empty() && now != said {
                tracing::warn!("{now}");
            }
            said = now;
            pause_unless_stopped(&stop, Duration::from_secs(1));
        }
        let _ = std::fs::remove_file(dir.join(shim_conf::FILE));
    }))
}

/// Copies the service account's token again as the kubelet rotates it
/// (every 10 s: a projected token is renewed at 80% of its lifetime, an hour
/// or more), until `stop`.
fn keep_token_fresh(access: ApiAccess, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut said = String::new();
        while !stop.load(Ordering::Relaxed) {
            let now = match access.refresh() {
                Ok(_) => String::new(),
                Err(e) => e,
            };
            if !now.is_empty() && now != said {
                tracing::warn!("refreshing the plugins' token copy: {now}");
            }
            said = now;
            pause_unless_stopped(&stop, Duration::from_secs(10));
        }
    })
}

/// Sleeps `pause`, waking every 50 ms to return early once `stop` is set:
/// the background loops end within 50 ms of SIGTERM.
fn pause_unless_stopped(stop: &AtomicBool, pause: Duration) {
    let until = Instant::now() + pause;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Upstream's Go flags take one dash.
fn config_path() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut path = PathBuf::from(DEFAULT_PATH);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-version" | "--version" => return Ok(None),
            "-config" | "--config" => path = args.next().ok_or("-config needs a FILE")?.into(),
            other => match other
                .strip_prefix("-config=")
                .or_else(|| other.strip_prefix("--config="))
            {
                Some(p) => path = p.into(),
                None => {
                    return Err(format!(
                    "unknown argument {other:?} (usage: multus-daemon [-config FILE] [-version])"
                ))
                }
            },
        }
    }
    Ok(Some(path))
}

/// How long the daemon waits for its watch caches' first lists before it
/// serves anyway.
const LISTED_WITHIN: Duration = Duration::from_secs(2);

fn main() {
    // A native plugin execs its wasm IPAM through a link to this binary.
    if let Some(plugin) = multus::shim::invoked_as() {
        let out = multus::shim::run(&plugin);
        print!("{}", out.stdout);
        std::process::exit(out.status);
    }
    let path = match config_path() {
        Ok(Some(p)) => p,
        Ok(None) => {
            println!("multus-daemon version:v{}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("multus-daemon: {e}");
            std::process::exit(2);
        }
    };
    let config = match DaemonConfig::read(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("multus-daemon: {e}");
            std::process::exit(1);
        }
    };
    if let Some(root) = &config.chroot_dir {
        if let Err(e) = multus_thick::chroot::check_pid_namespace(root) {
            eprintln!("multus-daemon: {e}");
            std::process::exit(1);
        }
    }
    // Logs where and as much as the config says; the metrics layer reads
    // the shared code's debug timing events (its own filter, so they are
    // never printed unless logLevel is debug).
    let metrics = Arc::new(Metrics::default());
    {
        use tracing_subscriber::filter::LevelFilter;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let log = &config.log;
        let printed = multus::logging::writer(log.file.as_deref(), log.to_stderr, "multus-daemon")
            .map(|w| {
                tracing_subscriber::fmt::layer()
                    .with_writer(w)
                    .with_ansi(false)
                    .with_filter(multus::logging::level(log.level))
            });
        let _ = tracing_subscriber::registry()
            .with(printed)
            .with(MetricsLayer(metrics.clone()).with_filter(LevelFilter::DEBUG))
            .try_init();
    }
    let mut config = config;
    let credentials = Credentials::find(config.kubeconfig().as_deref());
    // In a pod with no kubeconfig of its own: a kubeconfig on a copy of
    // the service account, for the processes the daemon starts outside it.
    let access = match (&credentials, config.kubeconfig()) {
        (Some(Credentials::InCluster), None) => {
            match ApiAccess::prepare(
                &config.socket_dir.join("api"),
                Path::new(SERVICE_ACCOUNT),
                |k| std::env::var(k).ok(),
            ) {
                Ok(a) => {
                    config.overrides.insert(
                        "kubeconfig".into(),
                        a.kubeconfig().display().to_string().into(),
                    );
                    Some(a)
                }
                Err(e) => {
                    eprintln!("multus-daemon: the service account's kubeconfig for plugins: {e}");
                    std::process::exit(1);
                }
            }
        }
        _ => None,
    };
    multus::delegate::wasm::engine::pool_instances(config.connection_limit as u32);
    // Paid now, not by the first pod: every module loaded and linked
    // before the socket exists (until then shims run pods themselves).
    match config.wasm() {
        Ok(wasm) => {
            let started = Instant::now();
            let warmed = multus::delegate::wasm::warm_up(&wasm);
            tracing::info!(
                modules = warmed,
                dir = %wasm.plugin_dir.display(),
                duration_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
                "wasm modules loaded and linked"
            );
        }
        Err(e) => tracing::warn!("the daemon config's wasm keys: {e}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    multus::delegate::wasm::cluster::share_clients(rt.handle().clone());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_shim_conf(&config, stop.clone());
    let refresher = access.map(|a| keep_token_fresh(a, stop.clone()));
    let status = rt.block_on(async move {
        let metrics_port = config.metrics_port;
        let cluster = match credentials {
            Some(credentials) => {
                let node = multus::delegate::wasm::cluster::node_name_from_env();
                if node.is_none() {
                    tracing::warn!("neither NODE_NAME nor MULTUS_NODE_NAME is set: pods are read from the API server, not a watch cache");
                }
                match Cluster::start(&credentials, node, metrics.clone()).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        eprintln!("multus-daemon: {e}");
                        return 1;
                    }
                }
            }
            None => {
                tracing::warn!("no kubeconfig in the daemon config and not in a pod: each request uses its conf's kubeconfig");
                None
            }
        };
        // The caches' first lists before the socket exists (until then
        // shims run pods themselves), bounded: an API server that does not
        // answer delays serving by this much at most.
        if let Some(c) = &cluster {
            let started = Instant::now();
            if c.wait_listed(LISTED_WITHIN).await {
                tracing::info!(duration_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3), "watch caches listed");
            } else {
                tracing::warn!(within_ms = LISTED_WITHIN.as_millis() as u64, "watch caches not listed yet; serving, reading live until they are");
            }
        }
        let listener = match server::bind(&config) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("multus-daemon: binding {}: {e}", config.socket().display());
                return 1;
            }
        };
        tracing::info!(socket = %config.socket().display(), limit = config.connection_limit, "serving");
        let daemon = Daemon::new(config, metrics, Connector(cluster));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(port) = metrics_port {
            let l = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("multus-daemon: binding metricsPort {port}: {e}");
                    return 1;
                }
            };
            let mut rx = stop_rx.clone();
            tokio::spawn(server::serve_metrics(daemon.clone(), l, async move {
                let _ = rx.wait_for(|s| *s).await;
            }));
        }
        let stopping = {
            let d = daemon.clone();
            async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
                let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("SIGINT handler");
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                // Shims see /readyz fail and wait; what runs may finish.
                d.ready.store(false, Ordering::Relaxed);
                tracing::info!("stopping: not ready; draining requests in flight");
                let until = Instant::now() + Duration::from_secs(10);
                while d.admission.in_flight() > 0 && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        server::serve(daemon, listener, stopping).await;
        let _ = stop_tx.send(true);
        0
    });
    stop.store(true, Ordering::Relaxed);
    for w in [writer, refresher].into_iter().flatten() {
        let _ = w.join();
    }
    std::process::exit(status);
}

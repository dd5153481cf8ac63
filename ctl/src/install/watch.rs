//! The installer's life: install the binaries, wait for the node's CNI,
//! write the confs, then (unless `--once`) keep them right until SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plan::{self, Plan};
use super::{binaries, kubeconfig, nad, owner, InstallError, Options};

/// How often a waiting installer says again what it waits for.
const REMIND: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_secs(1);

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Logs at INFO and above on stderr: what the long-running commands
/// (the installer's watch, plugin sync, plugin aggregate) say.
pub fn log_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

/// A flag SIGTERM and SIGINT raise; exit code 1 (said, naming `cmd`) when
/// they cannot be handled.
pub fn stop_on_signals(cmd: &str) -> Result<Arc<AtomicBool>, i32> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("multusctl {cmd}: cannot handle signal {sig}: {e}");
            return Err(1);
        }
    }
    Ok(stop)
}

/// Sleeps `d`, returning early (true) when `stop` is raised.
pub fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    stop.load(Ordering::Relaxed)
}

/// Retries `attempt` every second until it gives `Some`, the deadline
/// passes (the last error, or a timeout naming `what`) or `stop` is raised.
/// Only a missing or unfinished master is waited out; other errors return.
fn wait_for<T>(
    opts: &Options,
    stop: &AtomicBool,
    what: &str,
    mut attempt: impl FnMut() -> Result<Option<T>, InstallError>,
) -> Result<Option<T>, InstallError> {
    let started = Instant::now();
    let mut told = None::<Instant>;
    loop {
        let last = match attempt() {
            Ok(Some(v)) => return Ok(Some(v)),
            Ok(None) => None,
            Err(e @ InstallError::Master(_)) => Some(e),
            Err(e) => return Err(e),
        };
        if started.elapsed() >= opts.master_wait {
            return Err(last.unwrap_or_else(|| InstallError::Timeout {
                waited: opts.master_wait,
                what: what.to_string(),
            }));
        }
        if told.is_none_or(|t| t.elapsed() >= REMIND) {
            match &last {
                Some(e) => tracing::warn!(error = %e, "waiting for {what}"),
                None => tracing::info!("waiting for {what}"),
            }
            told = Some(Instant::now());
        }
        if sleep_unless(stop, POLL) {
            return Ok(None);
        }
    }
}

/// What the watching installer has done or said already.
#[derive(Default)]
struct Seen {
    nad: Option<(String, String)>,
    shadowed_by: Vec<String>,
}

/// Applies the plan; creates the master's NAD first, so a node never shows
/// a conf whose NAD is missing.
fn reconcile(opts: &Options, env: Env, plan: &Plan, seen: &mut Seen) -> Result<(), InstallError> {
    if plan.shadowed_by != seen.shadowed_by {
        for name in &plan.shadowed_by {
            tracing::warn!("{}", plan::shadow_warning(name, &plan.conf_path));
        }
        seen.shadowed_by = plan.shadowed_by.clone();
    }
    let nad_done = &mut seen.nad;
    if let Some(want) = &plan.nad {
        if nad_done.as_ref() != Some(want) {
            let (ns, name) = want;
            let obj = nad::object(ns, name)?;
            let server = kubeconfig::server(env(kubeconfig::ENV_HOST), env(kubeconfig::ENV_PORT))?;
            let created = nad::ensure(&opts.serviceaccount_dir, &server, &obj)?;
            tracing::info!(namespace = %ns, name = %name, created, "NAD for the master network");
            *nad_done = Some(want.clone());
        }
    }
    for change in plan::apply(plan, false)? {
        tracing::info!("{change}");
    }
    Ok(())
}

/// `--check`: exit status 0 when the host is up to date.
pub fn check(opts: &Options, env: Env) -> Result<Vec<String>, InstallError> {
    match plan::plan(opts, env)? {
        None => Ok(vec!["no master CNI conf".into()]),
        Some(p) => plan::apply(&p, true),
    }
}

/// Runs the installer until done (`--once`) or until `stop` is raised;
/// then, with `--cleanup-on-exit`, undoes the install if its DaemonSet
/// is going away.
pub fn run(opts: &Options, env: Env, stop: &AtomicBool) -> Result<(), InstallError> {
    serve(opts, env, stop)?;
    if stop.load(Ordering::Relaxed) && opts.cleanup_on_exit {
        match owner::verdict(&opts.serviceaccount_dir, env) {
            owner::Verdict::Keep(why) => tracing::info!("keeping the conf: {why}"),
            owner::Verdict::CleanUp(why) => {
                tracing::info!("cleaning up: {why}");
                for done in plan::cleanup(opts)? {
                    tracing::info!("{done}");
                }
            }
        }
    }
    Ok(())
}

fn serve(opts: &Options, env: Env, stop: &AtomicBool) -> Result<(), InstallError> {
    let keys = plan::keys(opts)?;
    let installed = binaries::install(opts, &keys)?;
    for p in &installed.copied {
        tracing::info!(path = %p.display(), "installed");
    }
    for p in &installed.removed {
        tracing::info!(path = %p.display(), "removed: no longer shipped");
    }
    if !installed.compiled.is_empty() {
        tracing::info!(
            modules = ?installed.compiled,
            duration_ms = installed.precompile_time.as_millis() as u64,
            "precompiled"
        );
    }
    if opts.thick {
        tracing::info!("thick mode: binaries and plugins installed; multus-daemon writes the conf");
        return Ok(());
    }

    if let Some(f) = &opts.readiness_indicator_file {
        let seen = opts.host(f);
        let what = format!("the readiness indicator file {}", seen.display());
        if wait_for(opts, stop, &what, || Ok(seen.exists().then_some(())))?.is_none() {
            return Ok(());
        }
    }
    let what = format!(
        "a master CNI conf in {}",
        opts.host(&opts.cni_conf_dir).display()
    );
    let mut seen = Seen::default();
    let first = wait_for(opts, stop, &what, || {
        let Some(p) = plan::plan(opts, env)? else {
            return Ok(None);
        };
        reconcile(opts, env, &p, &mut seen)?;
        Ok(Some(p))
    })?;
    let Some(first) = first else {
        return Ok(());
    };
    tracing::info!(
        master = %first.master.file_name,
        conf = %first.conf_path.display(),
        "multus installed"
    );
    if opts.once {
        return Ok(());
    }

    let mut failing = false;
    while !sleep_unless(stop, opts.watch_interval) {
        let result = plan::plan(opts, env).and_then(|p| match p {
            Some(p) => reconcile(opts, env, &p, &mut seen).map(|()| true),
            None => Ok(false),
        });
        // Log a lasting condition once, not every tick.
        match result {
            Ok(true) => failing = false,
            Ok(false) if !failing => {
                failing = true;
                tracing::warn!(
                    "no master CNI conf any more in {}; keeping multus's conf",
                    opts.host(&opts.cni_conf_dir).display()
                );
            }
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "cannot update the install; keeping what is there");
            }
            _ => {}
        }
    }
    tracing::info!("stopping");
    Ok(())
}

//! The host-effect audit of issue 27: the real `multus` (thin), and the
//! daemon through the shim (thick), run under `strace -f` over a corpus of
//! hostile delegate configs (one seed per numbered escape, mutated by a
//! seeded grammar), judged by `multus_testbed::audit`'s rules: no exec
//! outside binDir/CNI_PATH and the shim, no write outside the case's
//! roots, no host sysctl, no blocking open of or read from a config-named
//! FIFO or device, no unbounded read, no canary opened or leaked, no hang.
//!
//! Environment: `MULTUS_AUDIT_BIN` (the multus to audit; a baseline
//! build), `MULTUS_AUDIT_DAEMON`/`MULTUS_AUDIT_SHIM`, `MULTUS_AUDIT_CASES`
//! (cases in all, default 80), `MULTUS_AUDIT_SEED`,
//! `MULTUS_AUDIT_TIMEOUT_SECS` (per run, default 20),
//! `MULTUS_AUDIT_ONLY` (a name filter), `MULTUS_AUDIT_TRACE_DIR` (keep the
//! traces), `MULTUS_AUDIT_RSS_MIB` (memory bound, default 1024), and
//! `MULTUS_AUDIT_EXPECT_VIOLATIONS=1`: the binary is a baseline with the
//! escapes, and every hostile seed must be caught.
//!
//! The thick lane runs `multus-daemon` and `multus-shim` from beside this
//! test (`cargo test --workspace` builds them; `cargo test -p
//! multus-runtime` alone does not rebuild them). A baseline check:
//!
//! ```text
//! git worktree add /work/baseline <commit>
//! (cd /work/baseline && CARGO_TARGET_DIR=/work/target-baseline \
//!    cargo build -p multus-runtime -p multus-thick -p multusctl --bins)
//! MULTUS_AUDIT_BIN=/work/target-baseline/debug/multus \
//! MULTUS_AUDIT_DAEMON=/work/target-baseline/debug/multus-daemon \
//! MULTUS_AUDIT_SHIM=/work/target-baseline/debug/multus-shim \
//! MULTUS_AUDIT_EXPECT_VIOLATIONS=1 MULTUS_AUDIT_CASES=19 \
//!   cargo test -p multus-runtime --test host_effects -- --nocapture
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use multus_testbed::audit::{self, corpus, CaseReport, Fixture, Settings, Traced, Violation};
use multus_testbed::exec_cni;
use multus_testbed::kube_api::FakeKubeApi;
use serde_json::json;

const DEFAULT_CASES: usize = 80;

fn strace_present() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn print_reports(lane: &str, settings: &Settings, reports: &[CaseReport], took: Duration) {
    eprintln!(
        "host-effect audit ({lane}) of {} : {} cases in {:.0}s{}",
        settings.multus.display(),
        reports.len(),
        took.as_secs_f64(),
        if settings.expect_violations {
            " (baseline: violations expected)"
        } else {
            ""
        }
    );
    for r in reports {
        eprintln!("  {}", r.summary());
    }
    let caught: Vec<String> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| {
            let mut rules: Vec<String> = r
                .violations
                .iter()
                .map(|(_, v)| v.rule.to_string())
                .collect();
            rules.sort();
            rules.dedup();
            format!("{} [{}]", r.name, rules.join(","))
        })
        .collect();
    eprintln!("  flagged: {}", caught.len());
    for c in caught {
        eprintln!("    {c}");
    }
}

fn node_with_modules() -> Node {
    let node = Node::new();
    node.install_wasm(audit::MODULES);
    node
}

/// Compiles every module into the shared wasm cache once, untraced, so
/// traced runs measure effects, not the compiler.
fn warm(node: &Node, settings: &Settings) {
    let dir = node.dir.path().join("warm");
    let pod = Pod::new();
    let fx = Fixture::create(
        &dir,
        &node.wasm_cache(),
        &built_plugins().join("host-local.wasm"),
        "warm",
        &pod.path,
    );
    for seed in corpus::controls() {
        let case = corpus::Case {
            name: seed.name.into(),
            seed: seed.clone(),
            mutations: Vec::new(),
            delivery: seed.delivery,
        };
        let conf = bytes(&audit::multus_conf(node, &fx, &case, &case.delegate(&fx)));
        for cmd in ["ADD", "DEL"] {
            let _ = exec_cni(
                &settings.multus,
                Some(&node.ns),
                &pod_env(cmd, "warm", &pod.path),
                &conf,
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn thin_multus_has_no_host_effect_outside_its_roots() {
    assert!(
        strace_present(),
        "strace missing: scripts/deps installs it (apt-get install strace)"
    );
    let settings = Settings::from_env(DEFAULT_CASES);
    let node = node_with_modules();
    warm(&node, &settings);
    let thin = audit::Thin {
        node: &node,
        settings: &settings,
        evil_module: built_plugins().join("host-local.wasm"),
    };
    let cases = settings.corpus();
    let start = Instant::now();
    let reports: Vec<CaseReport> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| thin.run_case(i, c))
        .collect();
    print_reports("thin", &settings, &reports, start.elapsed());
    if let Err(e) = audit::verdict(&reports, settings.expect_violations) {
        panic!("host-effect audit (thin) failed:\n{e}");
    }
}

/// Legitimate cluster IPAM: whereabouts on multus's own kubeconfig
/// (named by the config, or not named at all), against the in-test API
/// server. It must work, and leave nothing outside the roots.
#[test]
fn thin_whereabouts_on_multus_own_kubeconfig_is_clean() {
    assert!(
        strace_present(),
        "strace missing: scripts/deps installs it (apt-get install strace)"
    );
    let settings = Settings::from_env(DEFAULT_CASES);
    let node = node_with_modules();
    warm(&node, &settings);
    let api = FakeKubeApi::start(&node.ns, "token-1").unwrap();
    // The pod the CNI_ARGS name (multus reads it with its kubeconfig).
    api.add_pod("default", "web", "uid-web", &[], &[]);
    let thin = audit::Thin {
        node: &node,
        settings: &settings,
        evil_module: built_plugins().join("host-local.wasm"),
    };
    let start = Instant::now();
    let mut reports = Vec::new();
    for (i, named) in [false, true].into_iter().enumerate() {
        let pod = Pod::new();
        let fx = thin.fixture(i, &pod);
        let mut ipam = json!({"type": "whereabouts", "range": format!("10.78.{i}.0/24"),
            "dataDir": fx.store.join("ipam")});
        if named {
            ipam["kubernetes"] = json!({"kubeconfig": api.kubeconfig()});
        }
        let delegate = json!({"cniVersion": "1.0.0", "name": format!("wa-ctl{i}"),
            "type": "macvlan", "master": "uplink0", "mode": "bridge",
            "dataDir": fx.store.join("macvlan"), "ipam": ipam});
        let seed = corpus::controls().remove(0);
        let case = corpus::Case {
            name: format!(
                "control-whereabouts-own-kubeconfig{}",
                if named { "-named" } else { "" }
            ),
            delivery: seed.delivery,
            seed,
            mutations: Vec::new(),
        };
        let mut conf = audit::multus_conf(&node, &fx, &case, &delegate);
        conf["kubeconfig"] = json!(api.kubeconfig());
        reports.push(thin.run_conf(i, &audit::Meta::of(&case), &fx, &pod, &bytes(&conf)));
        let _ = std::fs::remove_dir_all(&fx.dir);
    }
    print_reports("thin, cluster IPAM", &settings, &reports, start.elapsed());
    if let Err(e) = audit::verdict(&reports, settings.expect_violations) {
        panic!("host-effect audit (whereabouts controls) failed:\n{e}");
    }
}

/// The daemon, traced, one per case; the case sent through the shim.
struct TracedDaemon {
    running: Option<audit::run::Running>,
    socket_dir: PathBuf,
}

impl TracedDaemon {
    fn start(node: &Node, settings: &Settings, daemon: &Path, dir: &Path) -> Self {
        let socket_dir = dir.join("run-multus");
        let config = dir.join("daemon-config.json");
        std::fs::write(
            &config,
            bytes(
                &node.with_wasm_dirs(json!({"socketDir": socket_dir, "logLevel": "debug",
                "queueTimeoutMs": 5000})),
            ),
        )
        .unwrap();
        let config_arg = config.display().to_string();
        let running = Traced {
            program: daemon,
            args: &["-config", &config_arg],
            netns: Some(&node.ns),
            env: &[],
            stdin: b"",
            cwd: &dir.join("outside/cwd"),
            trace_file: dir.join("daemon.trace"),
            limits: settings.limits(),
        }
        .spawn()
        .expect("starting multus-daemon under strace");
        let d = Self {
            running: Some(running),
            socket_dir,
        };
        let until = Instant::now() + Duration::from_secs(60);
        while !d.socket_dir.join("multus.sock").exists() {
            assert!(Instant::now() < until, "the traced daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// Stops it: SIGTERM, then killed if it has not exited 10 s later (a
    /// request still stuck in it; `timed_out` says so).
    fn stop(mut self) -> audit::TracedRun {
        let running = self.running.take().unwrap();
        running.signal(libc::SIGTERM);
        let wall = running.elapsed() + Duration::from_secs(10);
        running
            .finish(audit::Limits {
                wall,
                rss_mib: u64::MAX,
            })
            .unwrap()
    }
}

impl Drop for TracedDaemon {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.signal(libc::SIGKILL);
            let _ = r.finish(audit::Limits {
                wall: Duration::from_secs(5),
                rss_mib: u64::MAX,
            });
        }
    }
}

/// The thick lane: each seed (and the controls) through `multus-shim` to
/// a traced `multus-daemon`. The daemon's effects are judged by the same
/// rules; a request the shim gives up on (the run's bound) is a hang.
#[test]
fn thick_daemon_has_no_host_effect_outside_its_roots() {
    assert!(
        strace_present(),
        "strace missing: scripts/deps installs it (apt-get install strace)"
    );
    let settings = Settings::from_env(DEFAULT_CASES);
    let (Some(daemon), Some(shim)) = (settings.daemon.clone(), settings.shim.clone()) else {
        panic!("multus-daemon/multus-shim not built: cargo test --workspace builds them");
    };
    let node = node_with_modules();
    warm(&node, &settings);
    // The seeds and controls only: a daemon per case is slow under strace.
    let cases: Vec<corpus::Case> = settings
        .corpus()
        .into_iter()
        .filter(|c| c.mutations.is_empty())
        .collect();
    let start = Instant::now();
    let mut reports = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        reports.push(thick_case(&node, &settings, &daemon, &shim, i, case));
    }
    print_reports("thick", &settings, &reports, start.elapsed());
    if let Err(e) = audit::verdict(&reports, settings.expect_violations) {
        panic!("host-effect audit (thick) failed:\n{e}");
    }
}

fn thick_case(
    node: &Node,
    settings: &Settings,
    daemon: &Path,
    shim: &Path,
    index: usize,
    case: &corpus::Case,
) -> CaseReport {
    let started = Instant::now();
    let pod = Pod::new();
    let dir = node.dir.path().join(format!("thick-{index:03}"));
    let token = format!("multus-audit-canary-thick-{}-{index}", std::process::id());
    let fx = Fixture::create(
        &dir,
        &node.wasm_cache(),
        &built_plugins().join("host-local.wasm"),
        &token,
        &pod.path,
    );
    let d = TracedDaemon::start(node, settings, daemon, &dir);
    let mut conf = audit::multus_conf(node, &fx, case, &case.delegate(&fx));
    conf["type"] = "multus-shim".into();
    conf["daemonSocketDir"] = json!(d.socket_dir);
    conf["daemonRequestTimeoutMs"] = json!(settings.wall.as_millis() as u64 + 30_000);
    let conf = bytes(&conf);
    let node_before = audit::node_sysctls(node);
    let pod_before = audit::pod_sysctls(&pod);
    let mut violations: Vec<(String, Violation)> = Vec::new();
    let mut outputs = Vec::new();
    for cmd in ["ADD", "DEL"] {
        // The shim itself is not judged (it only forwards), but it runs
        // bounded: a request that outlives the bound is the daemon's hang.
        let cid = format!("thick{index}");
        let env = pod_env(cmd, &cid, &pod.path);
        let run = Traced {
            program: shim,
            args: &[],
            netns: Some(&node.ns),
            env: &env,
            stdin: &conf,
            cwd: &fx.cwd,
            trace_file: dir.join(format!("shim-{}.trace", cmd.to_lowercase())),
            limits: settings.limits(),
        }
        .run()
        .expect("running multus-shim");
        if run.timed_out {
            violations.push((
                cmd.into(),
                Violation::new(
                    audit::Rule::Hang,
                    format!(
                        "the daemon did not answer within {:.0}s",
                        run.elapsed.as_secs_f64()
                    ),
                ),
            ));
        }
        if run.output.stdout.contains(&token) || run.output.stderr.contains(&token) {
            violations.push((
                cmd.into(),
                Violation::new(
                    audit::Rule::Canary,
                    "the secret's bytes in the shim's output",
                ),
            ));
        }
        outputs.push(run.output);
    }
    let daemon_run = d.stop();
    audit::keep_trace(settings, "thick", index, &case.name, "daemon", &daemon_run);
    let policy = audit::policy(
        node,
        &fx,
        &[daemon.to_path_buf(), settings.multus.clone()],
        &[dir.join("run-multus")],
    );
    let mut judged = audit::judge(&daemon_run, &policy, &fx);
    for v in judged
        .iter_mut()
        .filter(|v| v.rule == audit::Rule::Hang && v.detail.starts_with("not finished"))
    {
        v.detail =
            "the daemon did not stop within 10s of SIGTERM: a request still stuck in it".into();
    }
    for v in judged {
        violations.push(("daemon".into(), v));
    }
    let mut case_v = audit::sysctl::diff("node", &node_before, &audit::node_sysctls(node));
    case_v.extend(audit::sysctl::diff(
        "pod",
        &pod_before,
        &audit::pod_sysctls(&pod),
    ));
    let markers = fx.markers_present();
    if !markers.is_empty() {
        case_v.push(Violation::new(
            audit::Rule::Canary,
            format!("a planted command ran: markers {markers:?}"),
        ));
    }
    violations.extend(case_v.into_iter().map(|v| ("case".to_string(), v)));
    let del = outputs.pop();
    let add = outputs.pop().unwrap();
    let problems = audit::problems(&audit::Meta::of(case), &add, del.as_ref());
    let _ = std::fs::remove_dir_all(&dir);
    CaseReport {
        name: format!("thick:{}", case.name),
        escape: case.seed.escape,
        control: case.is_control(),
        hostile_seed: case.is_hostile_seed(),
        add,
        del,
        violations,
        problems,
        elapsed: started.elapsed(),
    }
}

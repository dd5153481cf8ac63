//! The host-effect audit (issue 27): runs the real `multus` under
//! `strace -f` over a corpus of hostile delegate configs and judges what
//! it did to the host, whatever it answered. A run fails the audit on:
//!
//! - **exec**: an exec, by a multus process, of anything but a plugin in
//!   `binDir`/`CNI_PATH`, the IPAM shim's link under `<wasmCacheDir>/bin`
//!   or the multus binary itself;
//! - **write**: a file or directory created, opened for writing
//!   (`O_WRONLY`/`O_RDWR`/`O_CREAT`/`O_TRUNC`), renamed, linked,
//!   symlinked, removed, chmod'd or chown'd outside the case's roots (its
//!   `cniDir`, store root, the wasm cache, `/dev/null`, a process's own
//!   `/proc/<pid>/{fd,ns}`). Paths are resolved as the kernel does, so a
//!   symlink inside a root that points out of it counts as outside;
//! - **host-sysctl**: a `/proc/sys` file outside `/proc/sys/net` opened for
//!   writing, or a change in the node netns's network sysctls, a global
//!   kernel key, or the pod's `lo` (values read before and after);
//! - **non-regular-file**: a config-named FIFO opened without
//!   `O_NONBLOCK`/`O_PATH` (the open itself blocks until a writer comes),
//!   or any byte read from a config-named FIFO or device (`/dev/zero`).
//!   Opening `/dev/zero` to `fstat` and refuse it is fine;
//! - **unbounded-read**: more than [`MAX_READ_BYTES`] read from one
//!   config-named regular file (an 8 GiB sparse file), or a read of one
//!   still unfinished when the run was killed;
//! - **canary**: an open (but with `O_PATH`) of a file multus must never
//!   open (a root-only secret, a module and grants file written outside
//!   `wasmPluginDir`): a config-named path is checked before it is opened,
//!   the secret's bytes in multus's stdout or stderr, or a marker file a
//!   planted command (a kubeconfig's `exec`/auth-provider, a `$(...)`)
//!   would create;
//! - **hang**: the run not finishing within its bound (it is killed), or
//!   growing past the memory bound.
//!
//! Only multus's own processes are judged (see [`rules`]): a native plugin
//! it execs from `binDir` is the admin's code. A case may well fail with a
//! CNI error (the expected answer to hostile input); the audit judges
//! effects, not answers.

pub mod corpus;
pub mod paths;
pub mod rules;
pub mod run;
pub mod sysctl;
pub mod trace;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use corpus::{Case, Delivery, Fixture};
pub use rules::{Policy, Rule, Violation};
pub use run::{Limits, Traced, TracedRun};

use crate::node::{plugins, pod_env, Node, Pod};
use crate::CniOutput;

/// Bytes multus may read from one config-named regular file.
pub const MAX_READ_BYTES: u64 = 16 << 20;

/// The audit's knobs, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `MULTUS_AUDIT_BIN`: the multus under audit (default the built one).
    pub multus: PathBuf,
    /// `MULTUS_AUDIT_DAEMON`, `MULTUS_AUDIT_SHIM`: the thick pair.
    pub daemon: Option<PathBuf>,
    pub shim: Option<PathBuf>,
    /// `MULTUS_AUDIT_CASES`: cases in all (controls and seeds included).
    pub cases: usize,
    /// `MULTUS_AUDIT_SEED`: the mutation PRNG's seed.
    pub seed: u64,
    /// `MULTUS_AUDIT_TIMEOUT_SECS`: one run's wall-clock bound.
    pub wall: Duration,
    /// `MULTUS_AUDIT_RSS_MIB`: one run's memory bound.
    pub rss_mib: u64,
    /// `MULTUS_AUDIT_EXPECT_VIOLATIONS=1`: the binary is a baseline with
    /// the escapes; every hostile seed must be caught.
    pub expect_violations: bool,
    /// `MULTUS_AUDIT_ONLY`: run the cases whose name contains this.
    pub only: Option<String>,
    /// `MULTUS_AUDIT_TRACE_DIR`: keep every trace there.
    pub trace_dir: Option<PathBuf>,
}

impl Settings {
    pub fn from_env(default_cases: usize) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let num = |k: &str, d: u64| {
            var(k).map_or(d, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{k}={v}: not a number"))
            })
        };
        // Beside the running test (`target/<profile>/deps/<test>`).
        let built = |name: &str| {
            let exe = std::env::current_exe().ok()?;
            let p = exe.parent()?.parent()?.join(name);
            p.is_file().then_some(p)
        };
        Self {
            multus: var("MULTUS_AUDIT_BIN").map_or_else(crate::node::multus, PathBuf::from),
            daemon: var("MULTUS_AUDIT_DAEMON")
                .map(PathBuf::from)
                .or_else(|| built("multus-daemon")),
            shim: var("MULTUS_AUDIT_SHIM")
                .map(PathBuf::from)
                .or_else(|| built("multus-shim")),
            cases: num("MULTUS_AUDIT_CASES", default_cases as u64) as usize,
            seed: num("MULTUS_AUDIT_SEED", 27),
            wall: Duration::from_secs(num("MULTUS_AUDIT_TIMEOUT_SECS", 20)),
            rss_mib: num("MULTUS_AUDIT_RSS_MIB", 1024),
            expect_violations: var("MULTUS_AUDIT_EXPECT_VIOLATIONS").is_some_and(|v| v != "0"),
            only: var("MULTUS_AUDIT_ONLY"),
            trace_dir: var("MULTUS_AUDIT_TRACE_DIR").map(PathBuf::from),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            wall: self.wall,
            rss_mib: self.rss_mib,
        }
    }

    /// The corpus these settings select.
    pub fn corpus(&self) -> Vec<Case> {
        corpus::corpus(self.cases, self.seed)
            .into_iter()
            .filter(|c| {
                self.only
                    .as_ref()
                    .is_none_or(|o| c.name.contains(o.as_str()))
            })
            .collect()
    }
}

/// What one case did.
#[derive(Debug)]
pub struct CaseReport {
    pub name: String,
    /// Issue 27's numbered escape of its seed (0: a control).
    pub escape: u8,
    pub control: bool,
    pub hostile_seed: bool,
    pub add: CniOutput,
    pub del: Option<CniOutput>,
    /// The violations, each with the command ("ADD", "DEL", "case") it came from.
    pub violations: Vec<(String, Violation)>,
    /// What is wrong besides the audit: a control that failed, a hostile
    /// seed whose ADD was not refused with a CNI error.
    pub problems: Vec<String>,
    pub elapsed: Duration,
}

impl CaseReport {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} ({:.1}s) ADD {:?}",
            self.name,
            self.elapsed.as_secs_f64(),
            self.add.status
        );
        let e = self.add.json();
        if let Some(code) = e.get("code") {
            let msg: String = e["msg"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(160)
                .collect();
            let _ = write!(s, " code {code}: {msg}");
        }
        for (cmd, v) in &self.violations {
            let _ = write!(s, "\n    {cmd} {v}");
        }
        for p in &self.problems {
            let _ = write!(s, "\n    problem: {p}");
        }
        s
    }
}

/// A multus run as a CNI error: exit status 1, `{"code": n, "msg": ...}` on stdout.
pub fn is_cni_error(out: &CniOutput) -> bool {
    let e = out.json();
    out.status == Some(1) && e["code"].is_u64() && e["msg"].is_string()
}

/// The wasm modules the corpus uses (`bridge` stays native: the shim cases
/// need the reference bridge).
pub const MODULES: &[&str] = &[
    "macvlan",
    "ptp",
    "host-local",
    "whereabouts",
    "tuning",
    "sbr",
    "static",
];

/// The grants of the corpus's multus conf: the interface modules may act
/// in the host netns, as an admin who installs them grants; whereabouts'
/// budget is cut so an unreachable API fails fast.
pub fn wasm_grants() -> Value {
    json!({
        "macvlan": {"hostNetns": true},
        "ptp": {"hostNetns": true},
        "whereabouts": {"timeoutMs": 8000, "clusterCallTimeoutMs": 2000}
    })
}

/// The multus conf of one case: the delegate in `delegates` or in
/// `confDir`, the case's `cniDir`, store root and config-file root.
pub fn multus_conf(node: &Node, fx: &Fixture, case: &Case, delegate: &Value) -> Value {
    let mut conf = node.with_wasm(json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "cniDir": fx.cni, "binDir": plugins(),
        "wasmPlugins": wasm_grants(),
    }));
    // After `with_wasm` (it sets the node's own roots): the case's only.
    conf["storeRoots"] = json!([fx.store]);
    conf["configFileRoots"] = json!([fx.config_files]);
    conf["kubeconfigAllowlist"] = json!([]);
    match case.delivery {
        Delivery::Delegates => conf["delegates"] = json!([delegate]),
        Delivery::ConfDir => {
            let ext = if delegate.get("plugins").is_some() {
                "conflist"
            } else {
                "conf"
            };
            std::fs::write(
                fx.conf_dir.join(format!("10-net.{ext}")),
                serde_json::to_vec_pretty(delegate).unwrap(),
            )
            .unwrap();
            conf["confDir"] = json!(fx.conf_dir);
            conf["clusterNetwork"] = delegate["name"].clone();
        }
    }
    conf
}

/// The policy of one case run by `images` (multus, or the daemon). The
/// module compiler, `multusctl` beside each image, counts as multus: it may
/// be exec'd, and its effects are judged.
pub fn policy(node: &Node, fx: &Fixture, images: &[PathBuf], extra_roots: &[PathBuf]) -> Policy {
    let mut write_roots = vec![fx.store.clone(), fx.cni.clone(), node.wasm_cache()];
    write_roots.extend_from_slice(extra_roots);
    let mut multus_images = images.to_vec();
    for i in images {
        if let Some(ctl) = i
            .parent()
            .map(|d| d.join("multusctl"))
            .filter(|c| c.is_file())
        {
            multus_images.push(ctl);
        }
    }
    Policy {
        multus_images,
        exec_dirs: vec![plugins(), "/opt/cni/bin".into()],
        shim_dirs: vec![node.wasm_cache().join("bin")],
        write_roots,
        canaries: fx.canaries(),
        watched: fx.watched(),
        cwd: fx.cwd.clone(),
        max_read_bytes: MAX_READ_BYTES,
    }
    .resolved()
}

/// Judges one traced run.
pub fn judge(run: &TracedRun, policy: &Policy, fx: &Fixture) -> Vec<Violation> {
    let mut v = rules::check(&trace::parse(&run.trace), policy);
    if run.timed_out {
        v.push(Violation::new(
            Rule::Hang,
            format!(
                "not finished after {:.1}s: killed",
                run.elapsed.as_secs_f64()
            ),
        ));
    }
    if let Some(mib) = run.memory_killed {
        v.push(Violation::new(
            Rule::Hang,
            format!("grew to {mib} MiB: killed"),
        ));
    }
    if run.output.stdout.contains(&fx.token) || run.output.stderr.contains(&fx.token) {
        v.push(Violation::new(
            Rule::Canary,
            "the secret canary's bytes are in multus's output",
        ));
    }
    v
}

/// The node's sysctls (its netns's network keys and the global ones).
pub fn node_sysctls(node: &Node) -> sysctl::Snapshot {
    let mut s = sysctl::snapshot(Some(&node.ns), sysctl::NODE_NET);
    s.extend(sysctl::snapshot(None, sysctl::KERNEL));
    s
}

pub fn pod_sysctls(pod: &Pod) -> sysctl::Snapshot {
    sysctl::snapshot(Some(&pod.ns), sysctl::POD_LO)
}

/// The thin lane: each case's ADD then DEL through `multus` (traced), in
/// `node`'s netns, one fresh pod per case.
pub struct Thin<'a> {
    pub node: &'a Node,
    pub settings: &'a Settings,
    /// The module planted as `evil.wasm`.
    pub evil_module: PathBuf,
}

/// What a run is, for its report.
#[derive(Debug, Clone)]
pub struct Meta {
    pub name: String,
    pub escape: u8,
    /// Must work and leave no violation.
    pub control: bool,
    /// Its ADD must be refused with a CNI error.
    pub hostile_seed: bool,
}

impl Meta {
    pub fn of(case: &Case) -> Self {
        Self {
            name: case.name.clone(),
            escape: case.seed.escape,
            control: case.is_control(),
            hostile_seed: case.is_hostile_seed(),
        }
    }
}

impl Thin<'_> {
    pub fn run_case(&self, index: usize, case: &Case) -> CaseReport {
        let pod = Pod::new();
        let fx = self.fixture(index, &pod);
        let delegate = case.delegate(&fx);
        let conf = serde_json::to_vec(&multus_conf(self.node, &fx, case, &delegate)).unwrap();
        let report = self.run_conf(index, &Meta::of(case), &fx, &pod, &conf);
        cleanup(&fx.dir);
        report
    }

    /// Plants case `index`'s fixture (its dir under the node's).
    pub fn fixture(&self, index: usize, pod: &Pod) -> Fixture {
        let dir = self.node.dir.path().join(format!("case-{index:03}"));
        let token = format!(
            "multus-audit-canary-{}-{index}-{:x}",
            std::process::id(),
            self.settings.seed
        );
        Fixture::create(
            &dir,
            &self.node.wasm_cache(),
            &self.evil_module,
            &token,
            &pod.path,
        )
    }

    /// ADD then DEL of multus conf `conf` for `pod`, traced and judged.
    pub fn run_conf(
        &self,
        index: usize,
        meta: &Meta,
        fx: &Fixture,
        pod: &Pod,
        conf: &[u8],
    ) -> CaseReport {
        let started = Instant::now();
        let node = self.node;
        let policy = policy(node, fx, std::slice::from_ref(&self.settings.multus), &[]);
        let node_before = node_sysctls(node);
        let pod_before = pod_sysctls(pod);
        let cid = format!("audit{index}");
        let mut violations = Vec::new();
        let mut outputs = Vec::new();
        for cmd in ["ADD", "DEL"] {
            let env = pod_env(cmd, &cid, &pod.path);
            let run = Traced {
                program: &self.settings.multus,
                args: &[],
                netns: Some(&node.ns),
                env: &env,
                stdin: conf,
                cwd: &fx.cwd,
                trace_file: fx.dir.join(format!("{}.trace", cmd.to_lowercase())),
                limits: self.settings.limits(),
            }
            .run()
            .expect("running multus under strace");
            keep_trace(self.settings, "thin", index, &meta.name, cmd, &run);
            for v in judge(&run, &policy, fx) {
                violations.push((cmd.to_string(), v));
            }
            if cmd == "ADD" {
                for v in sysctl::diff("pod", &pod_before, &pod_sysctls(pod)) {
                    violations.push((cmd.to_string(), v));
                }
            }
            outputs.push(run.output);
        }
        let mut case_v = sysctl::diff("node", &node_before, &node_sysctls(node));
        case_v.extend(sysctl::diff("pod", &pod_before, &pod_sysctls(pod)));
        let markers = fx.markers_present();
        if !markers.is_empty() {
            case_v.push(Violation::new(
                Rule::Canary,
                format!("a planted command ran: markers {markers:?}"),
            ));
        }
        for v in case_v {
            if !violations.iter().any(|(_, w)| w == &v) {
                violations.push(("case".into(), v));
            }
        }
        let del = outputs.pop();
        let add = outputs.pop().expect("ADD ran");
        let problems = problems(meta, &add, del.as_ref());
        CaseReport {
            name: meta.name.clone(),
            escape: meta.escape,
            control: meta.control,
            hostile_seed: meta.hostile_seed,
            add,
            del,
            violations,
            problems,
            elapsed: started.elapsed(),
        }
    }
}

/// What is wrong with a run's answers: a control that failed, a hostile
/// seed's ADD that was not refused with a CNI error.
pub fn problems(meta: &Meta, add: &CniOutput, del: Option<&CniOutput>) -> Vec<String> {
    let mut problems = Vec::new();
    if meta.control {
        if !add.ok() {
            problems.push(format!(
                "control ADD failed: {} {}",
                add.stdout,
                add.stderr.trim()
            ));
        }
        if let Some(d) = del.filter(|d| !d.ok()) {
            problems.push(format!(
                "control DEL failed: {} {}",
                d.stdout,
                d.stderr.trim()
            ));
        }
    }
    if meta.hostile_seed && !is_cni_error(add) {
        problems.push(format!(
            "hostile seed's ADD was not refused with a CNI error: status {:?} stdout {}",
            add.status,
            add.stdout.trim()
        ));
    }
    problems
}

/// Copies a run's trace and output to `MULTUS_AUDIT_TRACE_DIR`, if set.
pub fn keep_trace(
    settings: &Settings,
    lane: &str,
    index: usize,
    name: &str,
    cmd: &str,
    run: &TracedRun,
) {
    let Some(dir) = &settings.trace_dir else {
        return;
    };
    let _ = std::fs::create_dir_all(dir);
    let short: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let base = dir.join(format!("{lane}-{index:03}-{short}.{}", cmd.to_lowercase()));
    let _ = std::fs::write(
        base.with_extension(format!("{}.trace", cmd.to_lowercase())),
        &run.trace,
    );
    let _ = std::fs::write(
        base.with_extension(format!("{}.out", cmd.to_lowercase())),
        format!(
            "status {:?} elapsed {:?} timed_out {} memory {:?}\n--- stdout\n{}\n--- stderr\n{}\n",
            run.output.status,
            run.elapsed,
            run.timed_out,
            run.memory_killed,
            run.output.stdout,
            run.output.stderr
        ),
    );
}

/// Removes a case's dir (the 8 GiB sparse file included); a FIFO or a
/// read-only leftover must not fail the test.
fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// The verdict over every report: `Err` lists what fails.
pub fn verdict(reports: &[CaseReport], expect_violations: bool) -> Result<(), String> {
    let mut fail = Vec::new();
    for r in reports {
        // A baseline's seeds are not refused; a control must work anyway.
        if !r.problems.is_empty() && (!expect_violations || r.control) {
            fail.push(format!("{}: {}", r.name, r.problems.join("; ")));
        }
        if r.control && !r.violations.is_empty() {
            fail.push(format!("control {} has violations", r.name));
        }
        if !expect_violations && !r.control && !r.violations.is_empty() {
            fail.push(format!("{}: {} violation(s)", r.name, r.violations.len()));
        }
    }
    if expect_violations {
        for r in reports.iter().filter(|r| r.hostile_seed) {
            if r.violations.is_empty() {
                fail.push(format!(
                    "baseline: seed {} (escape {}) was not caught",
                    r.name, r.escape
                ));
            }
        }
    }
    if fail.is_empty() {
        Ok(())
    } else {
        Err(fail.join("\n"))
    }
}

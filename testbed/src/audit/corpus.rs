//! The hostile delegate configs: one seed per numbered escape of issue 27,
//! a few legitimate controls, and mutants of the seeds drawn by a small
//! deterministic grammar (a seeded PRNG; the same seed gives the same
//! corpus). Every value is a NAD author's: types, paths, kubeconfigs and
//! `prevResult`s placed at every key that names a host resource.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// splitmix64: small, seedable, good enough to pick grammar productions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// The files one case plants. Everything lives under the case's dir; only
/// `store`, `cni` (and the node's wasm cache) are where multus may write.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub dir: PathBuf,
    /// The case's store root (the conf's `storeRoots`).
    pub store: PathBuf,
    /// The conf's `cniDir`.
    pub cni: PathBuf,
    /// The conf's `confDir`.
    pub conf_dir: PathBuf,
    /// The conf's `configFileRoots`.
    pub config_files: PathBuf,
    /// Where the hostile targets live: outside every allowed root.
    pub outside: PathBuf,
    /// The traced process's cwd (relative config paths land here).
    pub cwd: PathBuf,
    /// A FIFO nobody writes.
    pub fifo: PathBuf,
    /// A root-only (0600) file holding [`Fixture::token`].
    pub secret: PathBuf,
    /// A symlink to `secret`.
    pub secret_link: PathBuf,
    /// An 8 GiB sparse file.
    pub huge: PathBuf,
    /// An ordinary directory outside the roots (an `/etc` stand-in).
    pub etc: PathBuf,
    /// `store/link`: a symlink inside the store root to `outside/victim-dir`.
    pub store_link: PathBuf,
    /// `outside/evil`: `evil.wasm` (a module) and `evil.grants.json` beside it.
    pub evil: PathBuf,
    /// `outside/victim`: where the shim-link escape points (`evil.wasm` there too).
    pub victim: PathBuf,
    /// Kubeconfigs whose user runs a command / an auth-provider command /
    /// sends `secret` as its token.
    pub kc_exec: PathBuf,
    pub kc_auth_provider: PathBuf,
    pub kc_token_file: PathBuf,
    /// Files a planted command would create.
    pub markers: PathBuf,
    /// The canary secret (also looked for in multus's output).
    pub token: String,
    /// The pod's netns path (a `prevResult`'s sandbox).
    pub pod_netns: String,
}

impl Fixture {
    /// Plants a case's files in `dir`. `wasm_cache` is the node's
    /// `wasmCacheDir` (the shim-link escape's temporary link lands beside
    /// it); `module` a wasm module to plant as `evil.wasm`.
    pub fn create(
        dir: &Path,
        wasm_cache: &Path,
        module: &Path,
        token: &str,
        pod_netns: &str,
    ) -> Self {
        let outside = dir.join("outside");
        let f = Fixture {
            dir: dir.to_path_buf(),
            store: dir.join("store"),
            cni: dir.join("cni"),
            conf_dir: dir.join("net.d"),
            config_files: dir.join("config-files"),
            cwd: outside.join("cwd"),
            fifo: outside.join("fifo"),
            secret: outside.join("secret"),
            secret_link: outside.join("secret-link"),
            huge: outside.join("huge"),
            etc: outside.join("etc"),
            store_link: dir.join("store/link"),
            evil: outside.join("evil"),
            victim: outside.join("victim"),
            kc_exec: outside.join("kubeconfig-exec"),
            kc_auth_provider: outside.join("kubeconfig-auth-provider"),
            kc_token_file: outside.join("kubeconfig-token-file"),
            markers: outside.join("markers"),
            token: token.to_string(),
            pod_netns: pod_netns.to_string(),
            outside,
        };
        for d in [
            &f.store,
            &f.cni,
            &f.conf_dir,
            &f.config_files,
            &f.cwd,
            &f.etc,
            &f.victim,
            &f.markers,
            &f.outside.join("victim-dir"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        let c = std::ffi::CString::new(f.fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path of our own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        std::fs::write(&f.secret, format!("{{\"token\": \"{token}\"}}\n{token}\n")).unwrap();
        std::fs::set_permissions(&f.secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&f.secret, &f.secret_link).unwrap();
        std::fs::File::create(&f.huge)
            .unwrap()
            .set_len(8 << 30)
            .unwrap();
        std::os::unix::fs::symlink(f.outside.join("victim-dir"), &f.store_link).unwrap();
        std::fs::copy(module, f.evil.with_extension("wasm")).unwrap();
        std::fs::write(
            f.outside.join("evil.grants.json"),
            r#"{"hostNetns": true, "clusterGroups": ["", "apps", "whereabouts.cni.cncf.io"]}"#,
        )
        .unwrap();
        std::fs::copy(module, f.victim.join("evil.wasm")).unwrap();
        // The shim link's temporary name is `<cache>/bin/.<type>.<pid>`:
        // with the escaping type, beside the cache, then the victim's path.
        let tmp_dir = wasm_cache
            .parent()
            .unwrap()
            .join(f.victim.strip_prefix("/").unwrap());
        std::fs::create_dir_all(tmp_dir).unwrap();
        let user = |u: Value| {
            json!({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9",
                    "insecure-skip-tls-verify": true}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u",
                    "namespace": "kube-system"}}],
                "users": [{"name": "u", "user": u}]})
        };
        let write =
            |p: &Path, v: Value| std::fs::write(p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        write(
            &f.kc_exec,
            user(
                json!({"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "/usr/bin/touch", "args": [f.markers.join("kubeconfig-exec")],
                "interactiveMode": "Never"}}),
            ),
        );
        write(
            &f.kc_auth_provider,
            user(json!({"auth-provider": {"name": "gcp", "config": {
                "cmd-path": "/usr/bin/touch",
                "cmd-args": f.markers.join("auth-provider").display().to_string(),
                "token-key": "{.token}"}}})),
        );
        write(&f.kc_token_file, user(json!({"tokenFile": f.secret})));
        f
    }

    /// The files multus must never open.
    pub fn canaries(&self) -> Vec<PathBuf> {
        vec![
            self.secret.clone(),
            self.evil.with_extension("wasm"),
            self.outside.join("evil.grants.json"),
            self.victim.join("evil.wasm"),
            self.victim.join("evil.grants.json"),
        ]
    }

    /// The config-named files that are not small regular files.
    pub fn watched(&self) -> Vec<PathBuf> {
        vec![self.fifo.clone(), "/dev/zero".into(), self.huge.clone()]
    }

    /// Markers a planted command would have created.
    pub fn markers_present(&self) -> Vec<String> {
        crate::files_under(&self.markers)
    }

    /// A `$(...)` that leaves a marker if a shell ever reads the config.
    pub fn shell_payload(&self) -> String {
        format!("$(/usr/bin/touch {})", self.markers.join("shell").display())
    }
}

/// A hostile value, made concrete against a case's [`Fixture`].
#[derive(Debug, Clone, PartialEq)]
pub enum Hostile {
    Literal(String),
    Fifo,
    DevZero,
    Secret,
    SecretLink,
    Huge,
    /// A directory outside the roots (an `/etc` stand-in).
    OutsideDir,
    /// A symlink inside the store root pointing out of it.
    StoreLink,
    /// A path longer than PATH_MAX.
    LongPath,
    /// `<outside>/evil`: a module and grants the NAD author wrote.
    EvilModule,
    /// `/../..<victim>/evil`: where the IPAM shim would link.
    ShimEscape,
    KubeconfigExec,
    KubeconfigAuthProvider,
    KubeconfigTokenFile,
    /// A prevResult naming the pod's `lo` with an address.
    PrevResultLo,
    /// Issue 19's: a prevResult naming `/proc/sys/kernel` as an interface.
    PrevResultProcSys,
}

impl fmt::Display for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hostile::Literal(s) => {
                let s: String = s.escape_debug().collect();
                if s.chars().count() > 24 {
                    write!(
                        f,
                        "{:?}...({} chars)",
                        s.chars().take(12).collect::<String>(),
                        s.len()
                    )
                } else {
                    write!(f, "{s:?}")
                }
            }
            other => write!(f, "{other:?}"),
        }
    }
}

impl Hostile {
    pub fn value(&self, fx: &Fixture) -> Value {
        let p = |p: &Path| json!(p.display().to_string());
        match self {
            Hostile::Literal(s) => json!(s),
            Hostile::Fifo => p(&fx.fifo),
            Hostile::DevZero => json!("/dev/zero"),
            Hostile::Secret => p(&fx.secret),
            Hostile::SecretLink => p(&fx.secret_link),
            Hostile::Huge => p(&fx.huge),
            Hostile::OutsideDir => p(&fx.etc),
            Hostile::StoreLink => p(&fx.store_link),
            Hostile::LongPath => {
                json!(format!(
                    "{}/{}",
                    fx.outside.display(),
                    vec!["d".repeat(200); 25].join("/")
                ))
            }
            Hostile::EvilModule => p(&fx.evil),
            Hostile::ShimEscape => {
                json!(format!("/../..{}/evil", fx.victim.display()))
            }
            Hostile::KubeconfigExec => p(&fx.kc_exec),
            Hostile::KubeconfigAuthProvider => p(&fx.kc_auth_provider),
            Hostile::KubeconfigTokenFile => p(&fx.kc_token_file),
            Hostile::PrevResultLo => json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "lo", "sandbox": fx.pod_netns}],
                "ips": [{"address": "127.0.0.1/8", "interface": 0}]}),
            Hostile::PrevResultProcSys => json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "/proc/sys/kernel", "sandbox": fx.pod_netns}],
                "ips": []}),
        }
    }
}

/// The plugin types a config may name, hostile: paths, dots, NULs, huge,
/// unicode, option-like.
pub fn hostile_types() -> Vec<Hostile> {
    let l = |s: &str| Hostile::Literal(s.to_string());
    vec![
        l("/bin/sh"),
        l("../../../../bin/sh"),
        l("../sh"),
        l(".."),
        l("."),
        l("./x"),
        l("a/b"),
        l("sh\u{0}"),
        Hostile::Literal("x".repeat(300)),
        l("тип-ü"),
        l("-rf"),
        Hostile::EvilModule,
        Hostile::ShimEscape,
    ]
}

/// Directories a config may name (`dataDir`, `ipam.dataDir`).
pub fn hostile_dirs() -> Vec<Hostile> {
    let l = |s: &str| Hostile::Literal(s.to_string());
    vec![
        Hostile::OutsideDir,
        Hostile::StoreLink,
        l(".."),
        l("rel/dir"),
        Hostile::LongPath,
        Hostile::Fifo,
        Hostile::DevZero,
    ]
}

/// Files a config may name (`ipam.configuration_path`).
pub fn hostile_files() -> Vec<Hostile> {
    vec![
        Hostile::Fifo,
        Hostile::DevZero,
        Hostile::SecretLink,
        Hostile::Secret,
        Hostile::Huge,
        Hostile::OutsideDir,
        Hostile::Literal("rel/file".into()),
        Hostile::LongPath,
    ]
}

/// Kubeconfigs a config may name (`ipam.kubernetes.kubeconfig`).
pub fn hostile_kubeconfigs() -> Vec<Hostile> {
    vec![
        Hostile::KubeconfigExec,
        Hostile::KubeconfigAuthProvider,
        Hostile::KubeconfigTokenFile,
        Hostile::DevZero,
        Hostile::Fifo,
        Hostile::SecretLink,
    ]
}

pub fn hostile_prev_results() -> Vec<Hostile> {
    vec![Hostile::PrevResultLo, Hostile::PrevResultProcSys]
}

/// A key of a delegate config that names a host resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Type,
    IpamType,
    DataDir,
    IpamDataDir,
    ConfigurationPath,
    Kubeconfig,
    PrevResult,
}

impl Slot {
    pub const ALL: [Slot; 7] = [
        Slot::Type,
        Slot::IpamType,
        Slot::DataDir,
        Slot::IpamDataDir,
        Slot::ConfigurationPath,
        Slot::Kubeconfig,
        Slot::PrevResult,
    ];

    /// The pointer below a plugin object.
    pub fn pointer(self) -> &'static str {
        match self {
            Slot::Type => "/type",
            Slot::IpamType => "/ipam/type",
            Slot::DataDir => "/dataDir",
            Slot::IpamDataDir => "/ipam/dataDir",
            Slot::ConfigurationPath => "/ipam/configuration_path",
            Slot::Kubeconfig => "/ipam/kubernetes/kubeconfig",
            Slot::PrevResult => "/prevResult",
        }
    }

    pub fn pool(self) -> Vec<Hostile> {
        match self {
            Slot::Type | Slot::IpamType => hostile_types(),
            Slot::DataDir | Slot::IpamDataDir => hostile_dirs(),
            Slot::ConfigurationPath => hostile_files(),
            Slot::Kubeconfig => hostile_kubeconfigs(),
            Slot::PrevResult => hostile_prev_results(),
        }
    }

    /// Applies only where its parent exists (an `ipam` key needs an `ipam`).
    fn applies(self, plugin: &Value) -> bool {
        match self {
            Slot::IpamType | Slot::IpamDataDir | Slot::ConfigurationPath | Slot::Kubeconfig => {
                plugin.get("ipam").is_some_and(Value::is_object)
            }
            _ => true,
        }
    }
}

/// Sets `value` at `pointer` (below `root`), creating objects on the way.
pub fn set_at(root: &mut Value, pointer: &str, value: Value) {
    let mut cur = root;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if let Ok(idx) = part.parse::<usize>() {
            cur = &mut cur[idx];
            continue;
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        if i + 1 == parts.len() {
            cur[*part] = value;
            return;
        }
        let obj = cur.as_object_mut().expect("object");
        cur = obj.entry(part.to_string()).or_insert_with(|| json!({}));
    }
}

/// One mutation: `value` at `slot` of the plugin at `plugin` (a pointer:
/// "" for a single conf, "/plugins/<i>" in a conflist).
#[derive(Debug, Clone)]
pub struct Mutation {
    pub plugin: String,
    pub slot: Slot,
    pub value: Hostile,
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}={}", self.plugin, self.slot.pointer(), self.value)
    }
}

/// How a case's delegate reaches multus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The conf's `delegates` list.
    Delegates,
    /// A file in `confDir` named by `clusterNetwork`.
    ConfDir,
}

/// A seed: the escape it reproduces and its delegate config.
#[derive(Clone)]
pub struct Seed {
    pub name: &'static str,
    /// Issue 27's numbered escape (0: a legitimate control).
    pub escape: u8,
    pub build: fn(&Fixture) -> Value,
    pub delivery: Delivery,
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seed").field("name", &self.name).finish()
    }
}

/// A case to run: a seed, maybe mutated.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub seed: Seed,
    pub mutations: Vec<Mutation>,
    pub delivery: Delivery,
}

impl Case {
    pub fn is_control(&self) -> bool {
        self.seed.escape == 0 && self.mutations.is_empty()
    }

    /// A hostile seed as written (its ADD must fail with a CNI error).
    pub fn is_hostile_seed(&self) -> bool {
        self.seed.escape != 0 && self.mutations.is_empty()
    }

    /// The delegate config against `fx`, mutations applied.
    pub fn delegate(&self, fx: &Fixture) -> Value {
        let mut d = (self.seed.build)(fx);
        for m in &self.mutations {
            set_at(
                &mut d,
                &format!("{}{}", m.plugin, m.slot.pointer()),
                m.value.value(fx),
            );
        }
        d
    }
}

const CNI: &str = "1.0.0";

// Every store a config names lies strictly beneath the case's store root
// (the conf's `storeRoots`): a module's default (/run/cni/<type>,
// /var/lib/cni/networks) would be the real host's, and outside the roots.
fn host_local(fx: &Fixture, subnet: &str) -> Value {
    json!({"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": fx.store.join("ipam")})
}

fn macvlan(name: &str, ipam: Value, fx: &Fixture) -> Value {
    json!({"cniVersion": CNI, "name": name, "type": "macvlan", "master": "uplink0",
        "mode": "bridge", "dataDir": fx.store.join("macvlan"), "ipam": ipam,
        "comment": fx.shell_payload()})
}

fn whereabouts(fx: &Fixture, kubeconfig: Value) -> Value {
    json!({"type": "whereabouts", "range": "10.77.0.0/24", "dataDir": fx.store.join("ipam"),
        "kubernetes": {"kubeconfig": kubeconfig}})
}

/// The seeds: issue 27's numbered escapes, as a NAD author writes them.
pub fn seeds() -> Vec<Seed> {
    let s = |name, escape, build: fn(&Fixture) -> Value| Seed {
        name,
        escape,
        build,
        delivery: Delivery::Delegates,
    };
    vec![
        s("1-ipam-type-bin-sh", 1, |fx| {
            macvlan("esc1a", json!({"type": "/bin/sh"}), fx)
        }),
        s("1-ipam-type-dotdot-sh", 1, |fx| {
            json!({"cniVersion": CNI, "name": "esc1b", "type": "ptp",
                "dataDir": fx.store.join("ptp"),
                "ipam": {"type": "../../../../bin/sh"}, "comment": fx.shell_payload()})
        }),
        s("1-ipam-type-module-elsewhere", 1, |fx| {
            let mut ipam = host_local(fx, "10.71.0.0/24");
            ipam["type"] = Hostile::EvilModule.value(fx);
            macvlan("esc1c", ipam, fx)
        }),
        s("2-kubeconfig-exec", 2, |fx| {
            macvlan(
                "esc2a",
                whereabouts(fx, Hostile::KubeconfigExec.value(fx)),
                fx,
            )
        }),
        s("2-kubeconfig-auth-provider", 2, |fx| {
            macvlan(
                "esc2b",
                whereabouts(fx, Hostile::KubeconfigAuthProvider.value(fx)),
                fx,
            )
        }),
        s("2-kubeconfig-token-file", 2, |fx| {
            macvlan(
                "esc2c",
                whereabouts(fx, Hostile::KubeconfigTokenFile.value(fx)),
                fx,
            )
        }),
        s("3-ipam-datadir-outside", 3, |fx| {
            let mut ipam = host_local(fx, "10.73.0.0/24");
            ipam["dataDir"] = Hostile::OutsideDir.value(fx);
            macvlan("esc3a", ipam, fx)
        }),
        s("3-ipam-datadir-symlink-out", 3, |fx| {
            let mut ipam = host_local(fx, "10.73.1.0/24");
            ipam["dataDir"] = Hostile::StoreLink.value(fx);
            macvlan("esc3b", ipam, fx)
        }),
        s("3-chained-datadir-outside", 3, |fx| {
            json!({"cniVersion": CNI, "name": "esc3c", "plugins": [
                {"type": "macvlan", "master": "uplink0", "mode": "bridge",
                 "dataDir": fx.store.join("macvlan"), "ipam": host_local(fx, "10.73.2.0/24")},
                {"type": "tuning", "mtu": 1400, "dataDir": Hostile::OutsideDir.value(fx)}]})
        }),
        s("4-configuration-path-fifo", 4, |fx| {
            let mut ipam = json!({"type": "whereabouts", "range": "10.74.3.0/24",
                "dataDir": fx.store.join("ipam")});
            ipam["configuration_path"] = Hostile::Fifo.value(fx);
            macvlan("esc4a", ipam, fx)
        }),
        s("4-configuration-path-dev-zero", 4, |fx| {
            let mut ipam = host_local(fx, "10.74.0.0/24");
            ipam["configuration_path"] = Hostile::DevZero.value(fx);
            macvlan("esc4b", ipam, fx)
        }),
        s("4-configuration-path-secret-link", 4, |fx| {
            let mut ipam = host_local(fx, "10.74.1.0/24");
            ipam["configuration_path"] = Hostile::SecretLink.value(fx);
            macvlan("esc4c", ipam, fx)
        }),
        s("4-configuration-path-huge", 4, |fx| {
            let mut ipam = host_local(fx, "10.74.2.0/24");
            ipam["configuration_path"] = Hostile::Huge.value(fx);
            macvlan("esc4d", ipam, fx)
        }),
        s("4-kubeconfig-dev-zero", 4, |fx| {
            macvlan("esc4e", whereabouts(fx, Hostile::DevZero.value(fx)), fx)
        }),
        s("4-kubeconfig-fifo", 4, |fx| {
            macvlan("esc4f", whereabouts(fx, Hostile::Fifo.value(fx)), fx)
        }),
        s("5-shim-link-escape", 5, |fx| {
            let mut ipam = host_local(fx, "10.75.0.0/24");
            ipam["type"] = Hostile::ShimEscape.value(fx);
            json!({"cniVersion": CNI, "name": "esc5", "type": "bridge", "bridge": "audbr0",
                "ipam": ipam})
        }),
        s("6-prev-result-through-native-portmap", 6, |fx| {
            json!({"cniVersion": CNI, "name": "esc6", "plugins": [
                {"type": "portmap", "capabilities": {"portMappings": true},
                 "prevResult": Hostile::PrevResultLo.value(fx)},
                {"type": "tuning", "dataDir": fx.store.join("tuning"),
                 "sysctl": {"net.ipv4.conf.lo.arp_ignore": "2",
                            "net.ipv4.conf.lo.accept_local": "1"}}]})
        }),
    ]
}

/// Legitimate configs: they must work, and leave no violation.
pub fn controls() -> Vec<Seed> {
    vec![
        Seed {
            name: "control-macvlan-host-local-tuning",
            escape: 0,
            build: |fx| {
                json!({"cniVersion": CNI, "name": "ctl1", "plugins": [
                    {"type": "macvlan", "master": "uplink0", "mode": "bridge",
                     "dataDir": fx.store.join("macvlan"),
                     "ipam": host_local(fx, "10.70.0.0/24")},
                    {"type": "tuning", "mtu": 1400, "dataDir": fx.store.join("tuning"),
                     "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"}}]})
            },
            delivery: Delivery::Delegates,
        },
        Seed {
            name: "control-native-bridge-wasm-ipam-confdir",
            escape: 0,
            build: |fx| {
                json!({"cniVersion": CNI, "name": "ctl2", "plugins": [
                    {"type": "bridge", "bridge": "audbr1", "isGateway": true,
                     "ipam": host_local(fx, "10.70.1.0/24")}]})
            },
            delivery: Delivery::ConfDir,
        },
    ]
}

/// The corpus: the controls, every seed, then mutants until `total` cases
/// (at least the controls and seeds), drawn from `seed`.
pub fn corpus(total: usize, seed: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let plain = |s: &Seed| Case {
        name: s.name.to_string(),
        seed: s.clone(),
        mutations: Vec::new(),
        delivery: s.delivery,
    };
    let mut out: Vec<Case> = controls().iter().chain(seeds().iter()).map(plain).collect();
    let parents: Vec<Seed> = seeds().into_iter().chain(controls()).collect();
    let mut i = 0;
    while out.len() < total {
        i += 1;
        let parent = rng.pick(&parents).clone();
        // The plugin objects of the parent's config (shape only: any fixture).
        let shape = (parent.build)(&Fixture::shape());
        let plugins: Vec<String> = match shape.get("plugins").and_then(Value::as_array) {
            Some(list) => (0..list.len()).map(|i| format!("/plugins/{i}")).collect(),
            None => vec![String::new()],
        };
        let n = 1 + rng.below(2);
        let mut mutations = Vec::new();
        for _ in 0..n {
            let plugin = rng.pick(&plugins).clone();
            let obj = shape.pointer(&plugin).unwrap_or(&shape).clone();
            // Distinct slots: a second value at the same key would hide the first.
            let slots: Vec<Slot> = Slot::ALL
                .into_iter()
                .filter(|s| s.applies(&obj))
                .filter(|s| {
                    !mutations
                        .iter()
                        .any(|m: &Mutation| m.plugin == plugin && m.slot == *s)
                })
                .collect();
            let slot = *rng.pick(&slots);
            let value = rng.pick(&slot.pool()).clone();
            mutations.push(Mutation {
                plugin,
                slot,
                value,
            });
        }
        let delivery = if rng.below(4) == 0 {
            Delivery::ConfDir
        } else {
            Delivery::Delegates
        };
        let desc: Vec<String> = mutations.iter().map(ToString::to_string).collect();
        out.push(Case {
            name: format!("mut{i:03}-{}[{}]", parent.name, desc.join(",")),
            seed: parent,
            mutations,
            delivery,
        });
    }
    out
}

impl Fixture {
    /// A fixture with paths only (nothing created): for a config's shape.
    fn shape() -> Self {
        let d = PathBuf::from("/nonexistent");
        Fixture {
            dir: d.clone(),
            store: d.clone(),
            cni: d.clone(),
            conf_dir: d.clone(),
            config_files: d.clone(),
            outside: d.clone(),
            cwd: d.clone(),
            fifo: d.clone(),
            secret: d.clone(),
            secret_link: d.clone(),
            huge: d.clone(),
            etc: d.clone(),
            store_link: d.clone(),
            evil: d.clone(),
            victim: d.clone(),
            kc_exec: d.clone(),
            kc_auth_provider: d.clone(),
            kc_token_file: d.clone(),
            markers: d,
            token: String::new(),
            pod_netns: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_deterministic_and_sized() {
        let a = corpus(40, 7);
        let b = corpus(40, 7);
        assert_eq!(a.len(), 40);
        let names = |c: &[Case]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_ne!(names(&a), names(&corpus(40, 8)));
        // Every numbered escape has a seed.
        for n in 1..=6 {
            assert!(
                a.iter().any(|c| c.is_hostile_seed() && c.seed.escape == n),
                "{n}"
            );
        }
    }

    #[test]
    fn mutations_land_at_their_slot() {
        let fx = Fixture::shape();
        let mut v = json!({"type": "macvlan"});
        set_at(&mut v, "/ipam/kubernetes/kubeconfig", json!("/k"));
        set_at(&mut v, "/dataDir", json!("/d"));
        assert_eq!(
            v,
            json!({"type": "macvlan", "ipam": {"kubernetes": {"kubeconfig": "/k"}}, "dataDir": "/d"})
        );
        let mut l = json!({"plugins": [{"type": "a"}, {"type": "b"}]});
        set_at(
            &mut l,
            "/plugins/1/prevResult",
            Hostile::PrevResultLo.value(&fx),
        );
        assert_eq!(l["plugins"][1]["prevResult"]["interfaces"][0]["name"], "lo");
        assert_eq!(
            Hostile::ShimEscape.value(&fx),
            json!("/../../nonexistent/evil")
        );
    }
}

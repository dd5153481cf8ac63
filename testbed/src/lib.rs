//! Test stand-ins, kept out of the production crate: throwaway nodes and
//! pods in network namespaces, shared by the demo, the bench and the
//! integration tests. A "node" netns stands in for the host so
//! nothing (bridges, host veths) touches the real host's network.

pub mod audit;
pub mod background;
pub mod confs;
pub mod connect_proxy;
pub mod cri;
pub mod kit;
pub mod kube_api;
pub mod manifests;
pub mod node;
pub mod pod_resources;
pub mod registry;
pub mod soak;
pub mod test_ca;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A millisecond quantile of `v` (0 when empty).
pub fn quantile(v: &[std::time::Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[((ms.len() as f64 - 1.0) * q).round() as usize]
}

/// The addresses (`ips[].address`) of a CNI result.
pub fn result_addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str().map(String::from))
        .collect()
}

/// The sha256 of `p`'s bytes, in hex.
pub fn sha256_file(p: &Path) -> io::Result<String> {
    use sha2::Digest;
    Ok(format!("{:x}", sha2::Sha256::digest(std::fs::read(p)?)))
}

/// The peak RSS (VmHWM) of process `pid` so far, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib / 1024.0)
}

/// Runs `ip` and returns its stdout, or an error carrying its stderr.
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A named network namespace under /run/netns, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> io::Result<Self> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn json(&self, args: &[&str]) -> io::Result<Value> {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let out = self.ip(&all)?;
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
            .map_err(io::Error::other)
    }

    /// Interface names, in kernel order.
    pub fn links(&self) -> io::Result<Vec<String>> {
        Ok(self
            .json(&["link", "show"])?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect())
    }

    /// The global addresses of `ifname` as `addr/prefix`.
    pub fn addrs(&self, ifname: &str) -> io::Result<Vec<String>> {
        Ok(self
            .json(&["addr", "show", "dev", ifname, "scope", "global"])?
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["local"].as_str()?,
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect())
    }

    /// The main table's IPv4 routes, as `ip -j route` objects.
    pub fn routes(&self) -> io::Result<Vec<Value>> {
        Ok(self
            .json(&["route", "show"])?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The policy routing state, as `ip -j` objects: the rules and the
    /// routes of every table but `local` (kernel-kept), both families.
    pub fn routing_state(&self) -> io::Result<Value> {
        let mut out = serde_json::Map::new();
        for (family, f) in [("4", "-4"), ("6", "-6")] {
            out.insert(format!("rules{family}"), self.json(&[f, "rule", "show"])?);
            let routes: Vec<Value> = self
                .json(&[f, "route", "show", "table", "all"])?
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["table"] != "local")
                .cloned()
                .collect();
            out.insert(format!("routes{family}"), Value::Array(routes));
        }
        Ok(Value::Object(out))
    }

    /// A link's attributes (`ip -j -d link show dev`).
    pub fn link(&self, ifname: &str) -> io::Result<Value> {
        Ok(self.json(&["-d", "link", "show", "dev", ifname])?[0].clone())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// What a CNI plugin run printed and returned.
#[derive(Debug)]
pub struct CniOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }
}

/// A multus conf without `wasmPluginDir` runs the machine's own modules
/// (`/etc/cni/multus/plugins`): on a node with multus installed, or after
/// an e2e run, a test would silently run wasm where it meant a reference
/// binary, or fail on another store root. Every test conf names its dir
/// (`confs::multus_delegates` and `Node::with_wasm` do).
fn check_hermetic(stdin: &[u8]) -> io::Result<()> {
    let Ok(Value::Object(conf)) = serde_json::from_slice::<Value>(stdin) else {
        return Ok(());
    };
    if conf.get("type").and_then(Value::as_str) == Some("multus")
        && !conf.keys().any(|k| k.eq_ignore_ascii_case("wasmPluginDir"))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a test's multus conf must name wasmPluginDir, or it runs the machine's /etc/cni/multus/plugins",
        ));
    }
    Ok(())
}

impl From<Output> for CniOutput {
    fn from(o: Output) -> Self {
        Self {
            status: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Execs `program` as a container runtime does (CNI_* env + stdin), inside
/// `node`'s netns when given. `env` replaces the CNI variables entirely.
pub fn exec_cni(
    program: &Path,
    node: Option<&Netns>,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> io::Result<CniOutput> {
    check_hermetic(stdin)?;
    let mut cmd = Command::new(program);
    for k in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let ns_file = node.map(|n| in_netns(&mut cmd, n)).transpose()?;
    let mut child = cmd.spawn()?;
    drop(ns_file);
    if let Some(mut s) = child.stdin.take() {
        // A plugin that rejects its env exits before reading stdin.
        match s.write_all(stdin) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
    }
    Ok(child.wait_with_output()?.into())
}

/// Makes `cmd` start inside `ns`. The returned file must stay open until
/// the command is spawned.
pub fn in_netns(cmd: &mut Command, ns: &Netns) -> io::Result<File> {
    let f = File::open(ns.path())?;
    let fd = f.as_raw_fd();
    // SAFETY: setns is async-signal-safe and only touches the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(f)
}

/// Enters `ns` for the rest of this thread's life (children inherit it).
pub fn enter(ns: &Netns) -> io::Result<()> {
    enter_path(&ns.path())
}

/// A TCP listener on `addr` inside `ns`, bound from a thread that enters
/// it (the socket stays in that netns), non-blocking for tokio.
pub fn listen_in(ns: &Netns, addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    let ns_path = ns.path();
    let listener = std::thread::spawn(move || -> io::Result<std::net::TcpListener> {
        enter_path(&ns_path)?;
        std::net::TcpListener::bind(addr)
    })
    .join()
    .map_err(|_| io::Error::other("bind thread panicked"))??;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Enters the netns at `path` for the rest of this thread's life.
pub fn enter_path(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Files in `dir` (recursively), as paths relative to it; empty if missing.
pub fn files_under(dir: &Path) -> Vec<String> {
    try_files_under(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
}

/// `files_under`, with an unreadable directory an error rather than "no
/// files" (a check that cannot look must not pass); a missing `dir` has
/// no files.
pub fn try_files_under(dir: &Path) -> io::Result<Vec<String>> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) -> io::Result<()> {
        let rd = match std::fs::read_dir(d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && d == base => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in rd {
            let p = e?.path();
            if p.is_dir() {
                walk(base, &p, out)?;
            } else {
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// The directory with the reference plugins: `CNI_REFERENCE_DIR`, else
/// Debian's /usr/lib/cni.
pub fn reference_plugin_dir() -> PathBuf {
    std::env::var_os("CNI_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/cni".into())
}

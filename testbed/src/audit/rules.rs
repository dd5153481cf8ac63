//! The rules a traced multus run is judged by (see the module docs for the
//! list). Only the calls of multus's own processes are judged: the traced
//! binary, a process started from a shim link, and the threads and forks
//! of those until they exec something else. A native plugin multus execs
//! legitimately is the node admin's code (outside the sandbox, as the threat
//! model says), so what it does after its exec is not multus's effect.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::paths::{absolute, is_proc, lexical, resolve, within};
use super::trace::{unquote, Call, Ret, AT_FDCWD};

/// What a traced run may do, and what the case planted.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The binaries whose processes are multus (`multus`, `multus-daemon`).
    pub multus_images: Vec<PathBuf>,
    /// Directories multus may exec binaries from: `binDir`, `CNI_PATH`.
    pub exec_dirs: Vec<PathBuf>,
    /// The IPAM shim's link dir (`<wasmCacheDir>/bin`): an exec there is
    /// multus re-entering itself.
    pub shim_dirs: Vec<PathBuf>,
    /// Where multus may create, write, rename, link, chmod or remove:
    /// the case's `cniDir`, `wasmCacheDir`, store roots, socket dir.
    pub write_roots: Vec<PathBuf>,
    /// Files multus must never open (a root-only secret, a module and
    /// grants file written outside `wasmPluginDir`).
    pub canaries: Vec<PathBuf>,
    /// Config-named files that are not small regular files.
    pub watched: Vec<PathBuf>,
    /// The cwd the traced process starts in.
    pub cwd: PathBuf,
    /// Bytes multus may read from one config-named regular file.
    pub max_read_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// An exec of anything but a plugin of `binDir`/`CNI_PATH`, or multus
    /// itself through the shim link.
    Exec,
    /// A file or directory created, opened for writing, renamed, linked,
    /// symlinked, removed or chmod'd outside the allowed roots.
    Write,
    /// A `/proc/sys` file outside `/proc/sys/net` opened for writing, or a
    /// node sysctl (or the pod's `lo`) changed.
    HostSysctl,
    /// A config-named FIFO opened without `O_NONBLOCK`/`O_PATH` (it blocks
    /// until a writer comes), or a read from a config-named FIFO or device.
    NonRegularFile,
    /// More than [`Policy::max_read_bytes`] read from one config-named file.
    UnboundedRead,
    /// A canary opened, its secret in multus's output, or a command a
    /// config planted (a kubeconfig's `exec`, a `$(...)`) run.
    Canary,
    /// The run did not finish within its bound (killed), or grew past the
    /// memory bound.
    Hang,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Exec => "exec",
            Rule::Write => "write",
            Rule::HostSysctl => "host-sysctl",
            Rule::NonRegularFile => "non-regular-file",
            Rule::UnboundedRead => "unbounded-read",
            Rule::Canary => "canary",
            Rule::Hang => "hang",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
}

impl Violation {
    pub fn new(rule: Rule, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.detail)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Image {
    /// Before the first exec: the tracer's own child.
    Tracer,
    Multus,
    Other(PathBuf),
}

#[derive(Debug, Clone)]
struct Proc {
    image: Image,
    cwd: PathBuf,
}

const WRITE_FLAGS: &[&str] = &["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"];
const READS: &[&str] = &["read", "pread64", "readv", "preadv", "preadv2"];

impl Policy {
    /// The policy with every path resolved as the kernel would (so a root
    /// given through a symlink, e.g. /var/run, still matches).
    pub fn resolved(&self) -> Policy {
        let r = |v: &[PathBuf]| v.iter().map(|p| resolve(p, true)).collect();
        Policy {
            multus_images: r(&self.multus_images),
            exec_dirs: r(&self.exec_dirs),
            shim_dirs: r(&self.shim_dirs),
            write_roots: r(&self.write_roots),
            canaries: r(&self.canaries),
            watched: r(&self.watched),
            cwd: self.cwd.clone(),
            max_read_bytes: self.max_read_bytes,
        }
    }

    fn classify(&self, target: &Path) -> Image {
        let real = resolve(target, true);
        if self.multus_images.contains(&real) || self.shim_dirs.iter().any(|d| within(target, d)) {
            Image::Multus
        } else {
            Image::Other(target.to_path_buf())
        }
    }

    fn exec_allowed(&self, target: &Path) -> bool {
        let in_dir = |d: &PathBuf| target.parent().is_some_and(|p| within(p, d));
        self.exec_dirs.iter().any(in_dir)
            || self.shim_dirs.iter().any(in_dir)
            || self.multus_images.contains(&resolve(target, true))
    }

    /// Why multus may not write `p` (resolved), or `None` if it may.
    fn write_denied(&self, p: &Path) -> Option<Rule> {
        if is_proc(p) {
            let p = lexical(p);
            if p.starts_with("/proc/sys/net") {
                // Pod sysctls are written here (by a thread in the pod's
                // netns); the node's are checked by value before and after.
                return None;
            }
            if p.starts_with("/proc/sys") {
                return Some(Rule::HostSysctl);
            }
            let own = p.iter().nth(2).and_then(|c| c.to_str()).is_some_and(|c| {
                c == "self" || c == "thread-self" || c.bytes().all(|b| b.is_ascii_digit())
            });
            let ns_or_fd = p.iter().any(|c| c == "ns" || c == "fd" || c == "fdinfo");
            return (!(own && ns_or_fd)).then_some(Rule::Write);
        }
        if p == Path::new("/dev/null") || self.write_roots.iter().any(|r| within(p, r)) {
            return None;
        }
        Some(Rule::Write)
    }
}

/// Judges every call of `calls` (one run's trace) by `policy` (resolved
/// with [`Policy::resolved`]).
pub fn check(calls: &[Call], policy: &Policy) -> Vec<Violation> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    for c in calls {
        if matches!(c.name.as_str(), "clone" | "clone3" | "fork" | "vfork") {
            if let Ret::Ok(child, _) = c.ret {
                parent.insert(child as u32, c.pid);
            }
        }
    }
    let mut procs: HashMap<u32, Proc> = HashMap::new();
    let mut out: BTreeSet<Violation> = BTreeSet::new();
    let mut read_bytes: HashMap<PathBuf, u64> = HashMap::new();
    for c in calls {
        if !procs.contains_key(&c.pid) {
            let inherited = parent
                .get(&c.pid)
                .and_then(|p| procs.get(p))
                .cloned()
                .unwrap_or(Proc {
                    image: Image::Tracer,
                    cwd: policy.cwd.clone(),
                });
            procs.insert(c.pid, inherited);
        }
        let proc = procs.get_mut(&c.pid).expect("inserted");
        // `AT_FDCWD</dir>` tells the thread's cwd exactly.
        for i in 0..c.args.len().min(4) {
            if let Some(fd) = c.fd_arg(i) {
                if fd.num == AT_FDCWD {
                    if let Some(p) = fd.path {
                        proc.cwd = p;
                    }
                }
            }
        }
        let multus = proc.image == Image::Multus;
        let cwd = proc.cwd.clone();
        // The directory a path argument is relative to: its dirfd's, else cwd.
        let base = |dirfd: Option<usize>| -> PathBuf {
            dirfd
                .and_then(|i| c.fd_arg(i))
                .and_then(|fd| fd.path)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| cwd.clone())
        };
        let path = |dirfd: Option<usize>, i: usize, follow: bool| -> Option<PathBuf> {
            let p = c.path_arg(i)?;
            Some(resolve(&absolute(&base(dirfd), &p), follow))
        };
        let deny = |p: &Path, what: &str| -> Option<Violation> {
            policy.write_denied(p).map(|rule| {
                Violation::new(
                    rule,
                    format!(
                        "{what} {} (pid {}, trace line {})",
                        p.display(),
                        c.pid,
                        c.line
                    ),
                )
            })
        };
        let done = c.ret.maybe_done();
        match c.name.as_str() {
            "execve" | "execveat" => {
                let (dirfd, i) = if c.name == "execveat" {
                    (Some(0), 1)
                } else {
                    (None, 0)
                };
                let Some(target) = path(dirfd, i, false) else {
                    continue;
                };
                if multus && done && !policy.exec_allowed(&target) {
                    out.insert(Violation::new(
                        Rule::Exec,
                        format!(
                            "exec {} (pid {}, trace line {})",
                            target.display(),
                            c.pid,
                            c.line
                        ),
                    ));
                }
                if matches!(c.ret, Ret::Ok(..)) {
                    let image = policy.classify(&target);
                    procs.get_mut(&c.pid).expect("inserted").image = image;
                }
            }
            "chdir" => {
                if let (Some(p), Ret::Ok(..)) = (path(None, 0, true), &c.ret) {
                    procs.get_mut(&c.pid).expect("inserted").cwd = p;
                }
            }
            "fchdir" => {
                if let (Some(p), Ret::Ok(..)) = (c.fd_arg(0).and_then(|f| f.path), &c.ret) {
                    procs.get_mut(&c.pid).expect("inserted").cwd = p;
                }
            }
            _ if !multus => {}
            "open" | "openat" | "openat2" | "creat" => {
                let (dirfd, i) = match c.name.as_str() {
                    "open" | "creat" => (None, 0),
                    _ => (Some(0), 1),
                };
                let flags = match c.name.as_str() {
                    "creat" => vec!["O_CREAT".to_string(), "O_WRONLY".into(), "O_TRUNC".into()],
                    "openat2" => c
                        .field(2, "flags")
                        .map(|f| super::trace::flag_names(&f))
                        .unwrap_or_default(),
                    _ => c.flags_arg(i + 1),
                };
                let has = |f: &str| flags.iter().any(|g| g == f);
                let follow = !has("O_NOFOLLOW");
                let Some(p) = path(dirfd, i, follow) else {
                    continue;
                };
                if done && policy.canaries.contains(&p) && !has("O_PATH") {
                    out.insert(Violation::new(
                        Rule::Canary,
                        format!(
                            "opened canary {} (pid {}, trace line {})",
                            p.display(),
                            c.pid,
                            c.line
                        ),
                    ));
                }
                if policy.watched.contains(&p)
                    && is_fifo(&p)
                    && !has("O_NONBLOCK")
                    && !has("O_PATH")
                {
                    out.insert(Violation::new(
                        Rule::NonRegularFile,
                        format!(
                            "opened the config-named FIFO {} blocking ({}) (pid {}, trace line {})",
                            p.display(),
                            flags.join("|"),
                            c.pid,
                            c.line
                        ),
                    ));
                }
                if done && WRITE_FLAGS.iter().any(|f| has(f)) {
                    out.extend(deny(&p, &format!("open({})", flags.join("|"))));
                }
            }
            "mkdir" | "rmdir" | "unlink" | "mknod" => {
                if let (true, Some(p)) = (done, path(None, 0, false)) {
                    out.extend(deny(&p, &c.name));
                }
            }
            "mkdirat" | "unlinkat" | "mknodat" => {
                if let (true, Some(p)) = (done, path(Some(0), 1, false)) {
                    out.extend(deny(&p, &c.name));
                }
            }
            "rename" | "link" => {
                for i in [0, 1] {
                    if let (true, Some(p)) = (done, path(None, i, false)) {
                        if c.name == "rename" || i == 1 {
                            out.extend(deny(&p, &c.name));
                        }
                    }
                }
            }
            "renameat" | "renameat2" | "linkat" => {
                for (d, i) in [(0, 1), (2, 3)] {
                    if let (true, Some(p)) = (done, path(Some(d), i, false)) {
                        if c.name != "linkat" || i == 3 {
                            out.extend(deny(&p, &c.name));
                        }
                    }
                }
            }
            "symlink" => {
                if let (true, Some(p)) = (done, path(None, 1, false)) {
                    out.extend(deny(&p, &c.name));
                }
            }
            "symlinkat" => {
                if let (true, Some(p)) = (done, path(Some(1), 2, false)) {
                    out.extend(deny(&p, &c.name));
                }
            }
            "chmod" | "chown" | "truncate" | "setxattr" | "removexattr" => {
                if let (true, Some(p)) = (done, path(None, 0, true)) {
                    out.extend(deny(&p, &c.name));
                }
            }
            "lchown" | "lsetxattr" | "lremovexattr" => {
                if let (true, Some(p)) = (done, path(None, 0, false)) {
                    out.extend(deny(&p, &c.name));
                }
            }
            "fchmodat" | "fchownat" | "utimensat" | "fchmodat2" => {
                let nofollow = c.args.iter().any(|a| a.contains("AT_SYMLINK_NOFOLLOW"));
                let p = path(Some(0), 1, !nofollow)
                    // utimensat(fd, NULL, ...): the fd's own file.
                    .or_else(|| c.fd_arg(0).and_then(|f| f.path).filter(|p| p.is_absolute()));
                if let (true, Some(p)) = (done, p) {
                    out.extend(deny(&p, &c.name));
                }
            }
            "fchmod" | "fchown" | "ftruncate" | "fsetxattr" | "fremovexattr" => {
                if let (true, Some(p)) = (done, c.fd_arg(0).and_then(|f| f.path)) {
                    if p.is_absolute() {
                        out.extend(deny(&strip_deleted(&p), &c.name));
                    }
                }
            }
            "bind" => {
                let unix = c.field(1, "sa_family").as_deref() == Some("AF_UNIX");
                let sun = c.field(1, "sun_path").and_then(|s| unquote(&s));
                if let (true, true, Some(s)) = (done, unix, sun) {
                    let p = std::path::PathBuf::from(std::ffi::OsString::from(
                        String::from_utf8_lossy(&s).into_owned(),
                    ));
                    if p.is_absolute() {
                        out.extend(deny(&resolve(&p, false), "bind"));
                    }
                }
            }
            name if READS.contains(&name) => {
                let Some(p) = c.fd_arg(0).and_then(|f| f.path) else {
                    continue;
                };
                if !policy.watched.contains(&p) {
                    continue;
                }
                let n = match c.ret {
                    Ret::Ok(n, _) => n as u64,
                    // Killed in the read: count what it asked for; a read
                    // of a regular file that never returned at all (strace
                    // prints no count then) was one too large to finish.
                    Ret::Unknown => match c.args.get(2) {
                        Some(a) => a.trim().parse::<u64>().unwrap_or(0),
                        None if !is_fifo(&p) && !is_device(&p) => u64::MAX,
                        None => 0,
                    },
                    Ret::Err(_) => continue,
                };
                if is_fifo(&p) || is_device(&p) {
                    out.insert(Violation::new(
                        Rule::NonRegularFile,
                        format!(
                            "read from the config-named {} {} (pid {}, trace line {})",
                            if is_fifo(&p) { "FIFO" } else { "device" },
                            p.display(),
                            c.pid,
                            c.line
                        ),
                    ));
                } else {
                    let e = read_bytes.entry(p).or_default();
                    *e = e.saturating_add(n);
                }
            }
            _ => {}
        }
    }
    for (p, n) in read_bytes {
        if n == u64::MAX {
            out.insert(Violation::new(
                Rule::UnboundedRead,
                format!("killed inside a read of the config-named {}", p.display()),
            ));
        } else if n > policy.max_read_bytes {
            out.insert(Violation::new(
                Rule::UnboundedRead,
                format!(
                    "read {n} bytes from the config-named {} (bound {})",
                    p.display(),
                    policy.max_read_bytes
                ),
            ));
        }
    }
    // One violation per rule and subject: a loop of reads or a retried
    // exec is one finding (its first occurrence, by trace line).
    let mut found: Vec<Violation> = out.into_iter().collect();
    found.sort_by_key(|v| line_of(&v.detail));
    let mut seen = std::collections::HashSet::new();
    found.retain(|v| seen.insert((v.rule, subject(&v.detail).to_string())));
    found.sort();
    found
}

/// A detail without its "(pid N, trace line M)" suffix.
fn subject(detail: &str) -> &str {
    detail.split(" (pid ").next().unwrap_or(detail)
}

fn line_of(detail: &str) -> usize {
    detail
        .rsplit("trace line ")
        .next()
        .and_then(|t| t.trim_end_matches(')').parse().ok())
        .unwrap_or(0)
}

fn strip_deleted(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

fn is_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p)
        .is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
}

#[cfg(test)]
mod tests {
    use super::super::trace::parse;
    use super::*;

    fn policy(dir: &Path) -> Policy {
        Policy {
            multus_images: vec!["/opt/multus/multus".into()],
            exec_dirs: vec!["/usr/lib/cni".into()],
            shim_dirs: vec![dir.join("cache/bin")],
            write_roots: vec![dir.join("cni"), dir.join("cache"), dir.join("store")],
            canaries: vec![dir.join("secret")],
            watched: vec![dir.join("fifo"), "/dev/zero".into(), dir.join("huge")],
            cwd: "/".into(),
            max_read_bytes: 1 << 20,
        }
    }

    fn rules(trace: &str, dir: &Path) -> Vec<Rule> {
        check(&parse(trace), &policy(dir).resolved())
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    const START: &str = "1 execve(\"/opt/multus/multus\", [\"multus\"], 0x1 /* 3 vars */) = 0\n";

    #[test]
    fn execs_outside_bin_dirs() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path();
        let t = format!(
            "{START}1 clone(child_stack=NULL, flags=SIGCHLD) = 2
2 execve(\"/usr/lib/cni/../../../../bin/sh\", [\"sh\"], 0x1 /* 3 vars */) = 0
2 execve(\"/usr/bin/touch\", [\"touch\"], 0x1 /* 3 vars */) = 0
"
        );
        // The second exec is sh's own, not multus's.
        assert_eq!(rules(&t, d), [Rule::Exec]);
        let ok = format!(
            "{START}1 clone(child_stack=NULL, flags=SIGCHLD) = 2
2 execve(\"/usr/lib/cni/bridge\", [\"bridge\"], 0x1 /* 3 vars */) = 0
2 clone(child_stack=NULL, flags=SIGCHLD) = 3
3 execve(\"/usr/sbin/iptables\", [\"iptables\"], 0x1 /* 3 vars */) = 0
2 execve(\"{}/cache/bin/host-local\", [\"host-local\"], 0x1 /* 3 vars */) = 0
2 execve(\"/bin/sh\", [\"sh\"], 0x1 /* 3 vars */) = 0
",
            d.display()
        );
        // The plugin's own exec is not judged; once it re-enters multus
        // through the shim link, that process is multus again.
        assert_eq!(rules(&ok, d), [Rule::Exec]);
        let failed = format!(
            "{START}1 execve(\"/bin/sh\", [\"sh\"], 0x1) = -1 ENOENT (No such file or directory)\n"
        );
        assert!(rules(&failed, d).is_empty());
    }

    #[test]
    fn the_tracers_own_exec_is_not_judged() {
        let d = tempfile::tempdir().unwrap();
        let t = "1 execve(\"/usr/bin/env\", [\"env\"], 0x1) = 0\n1 openat(AT_FDCWD</>, \"/etc/x\", O_WRONLY|O_CREAT, 0644) = 3</etc/x>\n";
        assert!(rules(t, d.path()).is_empty());
    }

    #[test]
    fn writes_outside_the_roots() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path().canonicalize().unwrap();
        let p = d.display();
        let t = format!(
            "{START}1 openat(AT_FDCWD</>, \"{p}/cni/results/x\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 3</x>
1 mkdir(\"{p}/store/net\", 0755) = 0
1 openat(AT_FDCWD</>, \"/dev/null\", O_RDWR) = 3</dev/null>
1 openat(AT_FDCWD</>, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>
1 openat(AT_FDCWD</proc/self/task/5/ns>, \"net\", O_RDONLY) = 4
1 mkdir(\"{p}/store/../etc\", 0755) = -1 EEXIST (File exists)
"
        );
        assert!(rules(&t, &d).is_empty(), "{:?}", rules(&t, &d));
        for bad in [
            format!("1 mkdirat(AT_FDCWD</>, \"{p}/store/../etc\", 0755) = 0"),
            format!("1 openat(AT_FDCWD<{p}/cni>, \"../x\", O_WRONLY|O_CREAT, 0600) = 3"),
            "1 symlinkat(\"/opt/multus/multus\", AT_FDCWD</>, \"/tmp/x/evil\") = 0".to_string(),
            format!("1 renameat2(AT_FDCWD</>, \"{p}/cache/bin/.x\", AT_FDCWD</>, \"/tmp/x/evil\", 0) = 0"),
            format!("1 unlinkat(5<{p}>, \"victim\", 0) = 0"),
            format!("1 rename(\"{p}/victim\", \"{p}/cni/v\") = 0"),
            format!("1 fchmod(3<{p}/victim>, 0777) = 0"),
            "1 mkdir(\"relative\", 0700) = 0".to_string(),
            "1 openat(AT_FDCWD</>, \"/proc/self/oom_score_adj\", O_WRONLY) = 3".to_string(),
            format!("1 linkat(AT_FDCWD</>, \"{p}/cni/a\", AT_FDCWD</>, \"{p}/b\", 0) = 0"),
            format!("1 bind(3<socket:[1]>, {{sa_family=AF_UNIX, sun_path=\"{p}/s.sock\"}}, 110) = 0"),
            format!("1 openat(AT_FDCWD</>, \"{p}/y\", O_WRONLY|O_CREAT, 0600 <unfinished ...>"),
        ] {
            let t = format!("{START}{bad}\n");
            assert_eq!(rules(&t, &d), [Rule::Write], "{bad}");
        }
    }

    #[test]
    fn a_symlink_inside_a_root_that_points_out() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(d.join("store")).unwrap();
        std::fs::create_dir_all(d.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join("store/net")).unwrap();
        let t = format!(
            "{START}1 openat(AT_FDCWD</>, \"{}/store/net/10.0.0.2\", O_WRONLY|O_CREAT, 0600) = 3\n",
            d.display()
        );
        assert_eq!(rules(&t, &d), [Rule::Write]);
    }

    #[test]
    fn host_sysctls() {
        let d = tempfile::tempdir().unwrap();
        let t = format!("{START}1 openat(AT_FDCWD</>, \"/proc/sys/net/ipv4/conf/eth0/arp_ignore\", O_WRONLY|O_TRUNC|O_CLOEXEC) = 3\n");
        assert!(rules(&t, d.path()).is_empty());
        for p in [
            "/proc/sys/kernel/domainname",
            "/proc/sys/net/../kernel/core_pattern",
            "/proc/sys/vm/drop_caches",
        ] {
            let t =
                format!("{START}1 openat(AT_FDCWD</>, \"{p}\", O_WRONLY|O_TRUNC|O_CLOEXEC) = 3\n");
            assert_eq!(rules(&t, d.path()), [Rule::HostSysctl], "{p}");
        }
    }

    #[test]
    fn fifos_devices_and_huge_files() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path().canonicalize().unwrap();
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a plain mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let f = fifo.display();
        // Blocking open, never returned (killed at the bound).
        let t =
            format!("{START}1 openat(AT_FDCWD</>, \"{f}\", O_RDONLY|O_CLOEXEC <unfinished ...>\n");
        assert_eq!(rules(&t, &d), [Rule::NonRegularFile]);
        // Opened non-blocking, checked and refused: fine.
        let t = format!(
            "{START}1 openat(AT_FDCWD</>, \"{f}\", O_RDONLY|O_NONBLOCK|O_CLOEXEC) = 3<{f}>\n"
        );
        assert!(rules(&t, &d).is_empty());
        // /dev/zero: opening is fine, reading is not.
        let t = format!(
            "{START}1 openat(AT_FDCWD</>, \"/dev/zero\", O_RDONLY|O_CLOEXEC) = 3</dev/zero>\n"
        );
        assert!(rules(&t, &d).is_empty());
        let t = format!("{t}1 read(3</dev/zero>, \"\\0\\0\"..., 8192) = 8192\n");
        assert_eq!(rules(&t, &d), [Rule::NonRegularFile]);
        // A loop of reads is one finding, naming its first read.
        let many = format!(
            "{t}{}",
            "1 read(3</dev/zero>, \"\\0\"..., 8192) = 8192\n".repeat(50)
        );
        let v = check(&parse(&many), &policy(&d).resolved());
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.ends_with("trace line 3)"), "{v:?}");
        // A read killed mid-way counts what it asked for.
        let h = d.join("huge");
        std::fs::write(&h, b"x").unwrap();
        let t = format!(
            "{START}1 read(3<{}>, \"\"..., 8589934592 <unfinished ...>\n",
            h.display()
        );
        assert_eq!(rules(&t, &d), [Rule::UnboundedRead]);
        let t = format!(
            "{START}1 read(3<{}>,  <unfinished ...>\n1 <... read resumed> <unfinished ...>) = ?\n",
            h.display()
        );
        assert_eq!(rules(&t, &d), [Rule::UnboundedRead]);
        // A huge regular file: read up to the bound only.
        let h = d.join("huge");
        std::fs::write(&h, b"x").unwrap();
        let h = h.display();
        let read = format!("1 read(3<{h}>, \"\\0\"..., 524288) = 524288\n");
        let t = format!("{START}{}", read.repeat(2));
        assert!(rules(&t, &d).is_empty());
        let t = format!("{START}{}", read.repeat(3));
        assert_eq!(rules(&t, &d), [Rule::UnboundedRead]);
    }

    #[test]
    fn canaries_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path().canonicalize().unwrap();
        std::fs::write(d.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(d.join("secret"), d.join("cfg")).unwrap();
        let t = format!(
            "{START}1 openat(AT_FDCWD</>, \"{}/cfg\", O_RDONLY|O_CLOEXEC) = 3\n",
            d.display()
        );
        assert_eq!(rules(&t, &d), [Rule::Canary]);
        let t = format!(
            "{START}1 openat(AT_FDCWD</>, \"{}/cfg\", O_RDONLY|O_NOFOLLOW|O_CLOEXEC) = -1 ELOOP (Too many levels of symbolic links)\n",
            d.display()
        );
        assert!(rules(&t, &d).is_empty());
    }

    #[test]
    fn cwd_follows_chdir_and_forks() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path().canonicalize().unwrap();
        let t = format!(
            "{START}1 chdir(\"{}/cni\") = 0
1 clone(child_stack=NULL, flags=SIGCHLD) = 2
2 mkdir(\"ok\", 0700) = 0
1 chdir(\"..\") = 0
1 mkdir(\"bad\", 0700) = 0
",
            d.display()
        );
        let v = check(&parse(&t), &policy(&d).resolved());
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].detail.contains(&format!("{}/bad", d.display())),
            "{v:?}"
        );
    }
}

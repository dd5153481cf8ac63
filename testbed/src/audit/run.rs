//! Runs a program under `strace -f` as a container runtime runs a CNI
//! plugin (CNI_* env, config on stdin, inside the node's netns), with a
//! wall-clock bound and a memory bound: past either, every traced process
//! is killed (strace itself last, so its trace is complete).

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{in_netns, CniOutput, Netns};

/// The syscalls traced: what creates, writes, removes or execs, what reads
/// (to see reads of config-named files), and what moves the cwd or
/// creates a process.
pub const TRACED: &str = "execve,execveat,open,openat,openat2,creat,mkdir,mkdirat,\
rmdir,unlink,unlinkat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,\
chmod,fchmod,fchmodat,chown,fchown,fchownat,lchown,truncate,ftruncate,mknod,mknodat,\
utimensat,setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr,bind,\
read,pread64,readv,preadv,preadv2,chdir,fchdir,clone,clone3,fork,vfork";

/// The bounds of one traced run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub wall: Duration,
    /// Resident memory of all traced processes together (held from the
    /// start by a watchdog, given at spawn).
    pub rss_mib: u64,
}

/// What a traced run did.
#[derive(Debug)]
pub struct TracedRun {
    pub output: CniOutput,
    /// The raw `strace -o` text.
    pub trace: String,
    pub elapsed: Duration,
    /// Killed at `Limits::wall`.
    pub timed_out: bool,
    /// Killed at `Limits::rss_mib` (the peak seen, MiB).
    pub memory_killed: Option<u64>,
}

/// A traced command to run.
pub struct Traced<'a> {
    pub program: &'a Path,
    pub args: &'a [&'a str],
    /// Entered before strace starts (its children inherit it).
    pub netns: Option<&'a Netns>,
    /// Replaces the CNI variables of the test's own environment.
    pub env: &'a [(&'a str, &'a str)],
    pub stdin: &'a [u8],
    pub cwd: &'a Path,
    /// Where strace writes its trace.
    pub trace_file: PathBuf,
    pub limits: Limits,
}

impl Traced<'_> {
    /// The strace command line, without the program.
    fn strace(&self) -> Command {
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-y", "-s", "48", "--seccomp-bpf", "-e"])
            .arg(format!("trace={TRACED}"))
            .arg("-o")
            .arg(&self.trace_file)
            .arg("--")
            .arg(self.program)
            .args(self.args);
        c
    }

    /// Runs to the end, or to a bound.
    pub fn run(&self) -> io::Result<TracedRun> {
        self.spawn()?.finish(self.limits)
    }

    /// Starts the traced program (strace in its own process group).
    pub fn spawn(&self) -> io::Result<Running> {
        let mut cmd = self.strace();
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
        cmd.envs(self.env.iter().copied())
            .current_dir(self.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: the bounds kill the whole group.
            .process_group(0);
        let ns_file = self.netns.map(|n| in_netns(&mut cmd, n)).transpose()?;
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        drop(ns_file);
        let stdin = child.stdin.take();
        let input = self.stdin.to_vec();
        let writer = std::thread::spawn(move || {
            if let Some(mut s) = stdin {
                let _ = s.write_all(&input);
            }
        });
        let stdout = reader(child.stdout.take());
        let stderr = reader(child.stderr.take());
        let pgid = child.id() as i32;
        let memory = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        // The memory bound holds while the program runs, waited on or not
        // (a daemon reading /dev/zero grows ~1 GB/s).
        let watchdog = {
            let (memory, done, tracer, cap) = (
                memory.clone(),
                done.clone(),
                child.id(),
                self.limits.rss_mib,
            );
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let rss = group_rss_mib(pgid, tracer);
                    if rss > cap {
                        memory.store(rss, Ordering::Relaxed);
                        for p in group_members(pgid)
                            .into_iter()
                            .filter(|p| *p as u32 != tracer)
                        {
                            // SAFETY: a process of the group we created.
                            unsafe { libc::kill(p, libc::SIGKILL) };
                        }
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Ok(Running {
            pgid,
            memory,
            done,
            watchdog: Some(watchdog),
            child,
            start,
            writer,
            stdout,
            stderr,
            trace_file: self.trace_file.clone(),
        })
    }
}

/// A traced program still running.
pub struct Running {
    child: Child,
    pgid: i32,
    /// The RSS (MiB) at which the watchdog killed the group, or 0.
    memory: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    start: Instant,
    writer: std::thread::JoinHandle<()>,
    stdout: std::sync::mpsc::Receiver<Vec<u8>>,
    stderr: std::sync::mpsc::Receiver<Vec<u8>>,
    trace_file: PathBuf,
}

impl Running {
    /// The traced processes (the group but strace).
    pub fn tracees(&self) -> Vec<i32> {
        group_members(self.pgid)
            .into_iter()
            .filter(|p| *p as u32 != self.child.id())
            .collect()
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Signals every traced process (e.g. SIGTERM for a daemon).
    pub fn signal(&self, sig: i32) {
        for p in self.tracees() {
            // SAFETY: a signal to a process of the group we created.
            unsafe { libc::kill(p, sig) };
        }
    }

    /// Waits for the end, killing everything at a bound (measured from the
    /// start).
    pub fn finish(mut self, limits: Limits) -> io::Result<TracedRun> {
        let mut timed_out = false;
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if self.start.elapsed() > limits.wall {
                timed_out = true;
                break kill_group(&mut self.child, self.pgid)?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.start.elapsed();
        self.done.store(true, Ordering::Relaxed);
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
        let memory_killed = Some(self.memory.load(Ordering::Relaxed)).filter(|m| *m > 0);
        // Anything the run left behind in its group (a plugin that forked).
        for p in group_members(self.pgid) {
            // SAFETY: a process of the group we created.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let _ = self.writer.join();
        let out = |r: &std::sync::mpsc::Receiver<Vec<u8>>| {
            // A process that escaped the group may hold the pipe open.
            r.recv_timeout(Duration::from_secs(3)).unwrap_or_default()
        };
        let (stdout, stderr) = (out(&self.stdout), out(&self.stderr));
        let trace = std::fs::read(&self.trace_file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // strace exits with the tracee's status.
        Ok(TracedRun {
            output: CniOutput {
                status: status.code(),
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            },
            trace,
            elapsed,
            timed_out,
            memory_killed,
        })
    }
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// The pids of process group `pgid` (threads are not listed).
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid pgrp ...: comm may hold spaces.
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

fn group_rss_mib(pgid: i32, tracer: u32) -> u64 {
    group_members(pgid)
        .into_iter()
        .filter(|p| *p as u32 != tracer)
        .filter_map(|p| {
            let s = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        / 1024
}

/// Kills the traced processes of the group, then strace once it has
/// written their ends (or after a grace period).
fn kill_group(child: &mut Child, pgid: i32) -> io::Result<std::process::ExitStatus> {
    let tracer = child.id() as i32;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let others: Vec<i32> = group_members(pgid)
            .into_iter()
            .filter(|p| *p != tracer)
            .collect();
        for p in &others {
            // SAFETY: a signal to a process of the group we created.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > until {
            // SAFETY: as above, the whole group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

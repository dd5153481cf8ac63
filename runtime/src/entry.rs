//! The start of the binaries a runtime execs per call (`multus`,
//! `multus-shim`), which are `#![no_main]`: Rust's own start reads
//! `/proc/self/maps` for the main thread's stack guard and sets up an
//! alternate signal stack, 0.16 ms of a 1.5 ms exec on the machine the
//! benches run on, paid on every pod's ADD and DEL. What of it a plugin
//! needs is done here.
//!
//! What is given up: the "has overflowed its stack" message. An overflow
//! still hits the kernel's guard gap below the main stack (or a thread's
//! guard page) and kills the process with SIGSEGV. Either way the runtime
//! sees a failed plugin.

/// Runs a binary's `main` body after [`init`]; a panic that reaches it
/// exits 101 as Rust's start did (a `#![no_main]` C `main` would abort,
/// and a root process's core dump may hold its credentials).
pub fn run(body: impl FnOnce() -> i32 + std::panic::UnwindSafe) -> i32 {
    init();
    std::panic::catch_unwind(body).unwrap_or(101)
}

/// What Rust's start does that a plugin relies on: SIGPIPE ignored (a
/// write to a runtime that stopped reading is an error, not a silent
/// death), and any of fds 0-2 that is closed opened on `/dev/null`, so a
/// file the process opens later never becomes its stdout; when that cannot
/// be done the process aborts, as Rust's start does.
fn init() {
    // SAFETY: plain libc calls on this process's own signal disposition
    // and descriptors, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        if libc::poll(fds.as_mut_ptr(), 3, 0) < 0 {
            libc::abort();
        }
        // Lowest first: each open takes the lowest free descriptor, the
        // closed one it replaces.
        for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
            if libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != p.fd {
                libc::abort();
            }
        }
    }
}

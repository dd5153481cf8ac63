//! The start of the binaries a runtime execs per call (`multus`,
//! `multus-shim`), which are `#![no_main]`: Rust's own start reads
//! `/proc/self/maps` for the main thread's stack guard and sets up an
//! alternate signal stack, 0.16 ms of a 1.5 ms exec on the machine the
//! benches run on, paid on every pod's ADD and DEL. What of it a plugin
//! needs is done here.
//!
//! What is given up: the "has overflowed its stack" message. An overflow
//! still hits the kernel's guard gap below the main stack (or a thread's
//! guard page) and kills the process with SIGSEGV; a panic that reaches
//! `main` aborts (SIGABRT) after printing its message, where Rust's start
//! exited 101. Either way the runtime sees a failed plugin.

/// What Rust's start does that a plugin relies on: SIGPIPE ignored (a
/// write to a runtime that stopped reading is an error, not a silent
/// death), and any of fds 0-2 that is closed opened on `/dev/null`, so a
/// file the process opens later never becomes its stdout.
pub fn init() {
    // SAFETY: plain libc calls on this process's own signal disposition
    // and descriptors, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        if libc::poll(fds.as_mut_ptr(), 3, 0) > 0 {
            for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 && null != p.fd {
                    libc::dup2(null, p.fd);
                    libc::close(null);
                }
            }
        }
    }
}

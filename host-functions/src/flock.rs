//! flock(2) with a bound on the wait, which flock itself does not have.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Takes the exclusive flock of `file` if it comes within `timeout`
/// (false when it does not): the non-blocking form polled, 1 ms doubling
/// to `max_pause`, a step no longer than the holder is expected to take.
pub fn exclusive_within(
    file: &impl AsRawFd,
    timeout: Duration,
    max_pause: Duration,
) -> std::io::Result<bool> {
    let until = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: flock on an fd the caller owns; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK)
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(e);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(false);
        }
        std::thread::sleep(pause.min(until - now));
        pause = (pause * 2).min(max_pause);
    }
}

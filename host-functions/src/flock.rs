//! flock(2) with a bound on the wait, which flock itself does not have.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The longest pause between two tries however long the wait: a wait of
/// seconds is an API server under load, where tries every few ms from
/// hundreds of waiting calls cost CPU the API server needs.
const LONGEST_PAUSE: Duration = Duration::from_millis(64);

/// Takes the exclusive flock of `file` if it comes within `timeout`
/// (false when it does not): the non-blocking form polled, 1 ms doubling
/// to `max_pause`, a step no longer than the holder is expected to take;
/// past that, to an eighth of the time waited so far (a holder that kept
/// it that long is not about to let go), at most [`LONGEST_PAUSE`].
pub fn exclusive_within(
    file: &impl AsRawFd,
    timeout: Duration,
    max_pause: Duration,
) -> std::io::Result<bool> {
    let started = Instant::now();
    let until = started + timeout;
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
        pause = next_pause(pause, now - started, max_pause);
    }
}

fn next_pause(pause: Duration, waited: Duration, max_pause: Duration) -> Duration {
    let cap = max_pause.max(waited / 8).min(LONGEST_PAUSE.max(max_pause));
    (pause * 2).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short waits try every few ms; a long one backs off to an eighth of
    /// the wait, then to the longest pause: a 10 s wait tries some 170
    /// times, where every 8 ms it tried 1250.
    #[test]
    fn long_waits_try_less_often() {
        let ms = Duration::from_millis;
        let max = ms(8);
        assert_eq!(next_pause(ms(1), ms(1), max), ms(2));
        assert_eq!(next_pause(ms(8), ms(20), max), ms(8));
        assert_eq!(next_pause(ms(8), ms(200), max), ms(16));
        assert_eq!(next_pause(ms(64), ms(5000), max), LONGEST_PAUSE);
        // A caller's own longer step stands.
        assert_eq!(next_pause(ms(100), ms(10), ms(200)), ms(200));
        let (mut waited, mut pause, mut tries) = (Duration::ZERO, ms(1), 0);
        while waited < Duration::from_secs(10) {
            waited += pause;
            pause = next_pause(pause, waited, max);
            tries += 1;
        }
        assert!(tries < 200, "{tries}");
    }
}

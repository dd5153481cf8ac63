//! `readinessindicatorfile`: the cluster network's agent creates it when it
//! is ready; ADD waits for it (upstream: poll 1 s for up to 45 s).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cni::{CniError, Code};

pub const WAIT: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(100);

/// Waits until `file` exists; a timeout is code 11 so the runtime retries.
pub fn wait(file: &Path, timeout: Duration) -> Result<(), CniError> {
    let start = Instant::now();
    loop {
        if file.exists() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(CniError::new(
                Code::TryAgainLater,
                format!(
                    "readinessindicatorfile {} did not appear within {}s: the cluster network is not ready",
                    file.display(),
                    timeout.as_secs_f32()
                ),
            ));
        }
        std::thread::sleep(POLL.min(timeout.saturating_sub(start.elapsed())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_and_timeout() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ready");
        let e = wait(&f, Duration::from_millis(150)).unwrap_err();
        assert_eq!(e.code, 11);
        assert!(e.msg.contains("readinessindicatorfile"));
        std::fs::write(&f, "").unwrap();
        wait(&f, Duration::ZERO).unwrap();
    }
}

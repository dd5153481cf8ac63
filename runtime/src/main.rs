//! The `multus` CNI plugin binary, exec'd by the container runtime.

use std::io::Write;

fn main() {
    let out = multus::app::run();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(out.status);
}

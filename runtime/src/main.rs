//! The `multus` CNI plugin binary, exec'd by the container runtime.

use std::io::Write;

fn main() {
    // Re-entered through a wasm IPAM's entry in a native plugin's CNI_PATH.
    let out = match multus::shim::invoked_as() {
        Some(plugin) => multus::shim::run(&plugin),
        None => multus::app::run(),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(out.status);
}

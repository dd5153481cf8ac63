//! The `multus` CNI plugin binary, exec'd by the container runtime.
//! `#![no_main]`: see `multus::entry`.
#![no_main]

use std::io::Write;

#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    multus::entry::run(|| {
        // Go's flag package takes `-version` and `--version` alike.
        if std::env::args()
            .skip(1)
            .any(|a| a == "-version" || a == "--version")
        {
            println!("{}", multus::app::version_line());
            return 0;
        }
        if std::env::var_os("CNI_COMMAND").is_none_or(|c| c.is_empty())
            && multus::shim::invoked_as().is_none()
        {
            eprintln!("{}", multus::app::about());
            return 0;
        }
        // Re-entered through a wasm IPAM's entry in a native plugin's CNI_PATH.
        let out = match multus::shim::invoked_as() {
            Some(plugin) => multus::shim::run(&plugin),
            None => multus::app::run(),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.stdout.as_bytes());
        let _ = stdout.flush();
        std::process::exit(out.status);
    })
}

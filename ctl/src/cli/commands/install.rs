//! `multusctl install`: logs to stderr, SIGTERM/SIGINT end the watch.

use crate::install::{watch, Options};

pub fn run(opts: &Options) -> i32 {
    watch::log_to_stderr();
    let env = |k: &str| std::env::var(k).ok();
    if opts.check {
        return match watch::check(opts, &env) {
            Ok(diffs) if diffs.is_empty() => 0,
            Ok(diffs) => {
                for d in diffs {
                    eprintln!("not up to date: {d}");
                }
                1
            }
            Err(e) => {
                eprintln!("multusctl install --check: {e}");
                1
            }
        };
    }
    let stop = match watch::stop_on_signals("install") {
        Ok(s) => s,
        Err(code) => return code,
    };
    match watch::run(opts, &env, &stop) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("multusctl install: {e}");
            1
        }
    }
}

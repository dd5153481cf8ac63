//! `multusctl install`: logs to stderr, SIGTERM/SIGINT end the watch.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::install::{watch, Options};

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

pub fn run(opts: &Options) -> i32 {
    init_logging();
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
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("multusctl install: cannot handle signal {sig}: {e}");
            return 1;
        }
    }
    match watch::run(opts, &env, &stop) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("multusctl install: {e}");
            1
        }
    }
}

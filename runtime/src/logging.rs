//! Logs go to stderr and/or `logFile` at `logLevel`; stdout is reserved for
//! the CNI result or error.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};

use crate::config::{LogLevel, MultusConf};

pub fn level(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Verbose => LevelFilter::INFO,
        // tracing has no panic level; multus never panics on purpose, so the
        // upstream default "panic" keeps only errors.
        LogLevel::Error | LogLevel::Panic => LevelFilter::ERROR,
    }
}

/// Where log lines go: `log_file` (appended) and/or stderr; `None` when
/// neither. A log file that cannot be opened is reported on stderr (naming
/// `who`) and otherwise ignored: logging must not fail a pod.
pub fn writer(log_file: Option<&Path>, to_stderr: bool, who: &str) -> Option<BoxMakeWriter> {
    let file = log_file.and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| eprintln!("{who}: cannot open logFile {}: {e}", p.display()))
            .ok()
    });
    Some(match (file, to_stderr) {
        (Some(f), true) => BoxMakeWriter::new(Mutex::new(f).and(std::io::stderr)),
        (Some(f), false) => BoxMakeWriter::new(Mutex::new(f)),
        (None, true) => BoxMakeWriter::new(std::io::stderr),
        (None, false) => return None,
    })
}

/// Installs the global subscriber.
pub fn init(conf: &MultusConf) {
    let Some(writer) = writer(conf.log_file.as_deref(), conf.log_to_stderr, "multus") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(level(conf.log_level))
        .try_init();
}

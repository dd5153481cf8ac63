//! `log`: what a plugin logs goes to the runtime's log, bounded by the
//! sink's budget; no grant needed.

use super::HostState;
use crate::bindings::multus::plugin::log;
use crate::log::Level;

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.log.log(level, &message);
    }
}

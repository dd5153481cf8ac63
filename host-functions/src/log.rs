//! Guest log lines into the runtime's tracing output, size-limited so a
//! chatty or hostile plugin cannot flood the node's logs.

pub const MAX_MESSAGE: usize = 4096;
pub const MAX_PER_CALL: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

pub struct LogSink {
    pub plugin: String,
    pub container_id: String,
    budget: usize,
    dropped: usize,
}

impl LogSink {
    pub fn new(plugin: &str, container_id: &str) -> Self {
        Self {
            plugin: plugin.into(),
            container_id: container_id.into(),
            budget: MAX_PER_CALL,
            dropped: 0,
        }
    }

    pub fn log(&mut self, level: Level, message: &str) {
        let mut msg = message;
        if msg.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg = &msg[..cut];
        }
        if msg.len() > self.budget {
            self.dropped += message.len();
            return;
        }
        self.budget -= msg.len();
        let (p, c) = (&self.plugin, &self.container_id);
        match level {
            Level::Trace => tracing::trace!(plugin = %p, container = %c, "{msg}"),
            Level::Debug => tracing::debug!(plugin = %p, container = %c, "{msg}"),
            Level::Info => tracing::info!(plugin = %p, container = %c, "{msg}"),
            Level::Warn => tracing::warn!(plugin = %p, container = %c, "{msg}"),
            Level::Error => tracing::error!(plugin = %p, container = %c, "{msg}"),
        }
    }

    /// Bytes dropped over the budget (reported once when the call ends).
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_output() {
        let mut s = LogSink::new("p", "c");
        let big = "x".repeat(MAX_MESSAGE * 2);
        for _ in 0..(MAX_PER_CALL / MAX_MESSAGE) {
            s.log(Level::Info, &big);
        }
        assert_eq!(s.dropped(), 0);
        s.log(Level::Info, "one more");
        assert_eq!(s.dropped(), "one more".len());
    }
}

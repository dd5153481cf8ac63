//! One wasmtime `Engine` per process, with epoch interruption driven by one
//! ticker thread (never one per call).

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// Epoch tick: the granularity of call deadlines.
pub const TICK: Duration = Duration::from_millis(10);

/// Names the engine settings below in artifact file names; change it with
/// them. (The wasmtime version and target are checked by wasmtime itself.)
pub const ARTIFACT_TAG: &str = "epoch1";

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The settings every engine of multus uses, the compiler's included.
pub fn config() -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c
}

/// The process's engine; the ticker starts with it.
pub fn engine() -> Result<&'static Engine, String> {
    ENGINE
        .get_or_init(|| {
            let engine = Engine::new(&config()).map_err(|e| e.to_string())?;
            let ticking = engine.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                })
                .map_err(|e| e.to_string())?;
            Ok(engine)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Deadline in ticks for a wall-clock budget (at least one tick).
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / TICK.as_millis()).max(1) as u64
}

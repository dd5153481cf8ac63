//! One wasmtime `Engine` per process, with epoch interruption driven by one
//! ticker thread (never one per call), which ticks only while a call runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Epoch tick: the granularity of call deadlines.
pub const TICK: Duration = Duration::from_millis(10);

/// Names the engine settings below in artifact file names; change it with
/// them. (The wasmtime version and target are checked by wasmtime itself.)
pub const ARTIFACT_TAG: &str = "epoch1";

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
static POOL: OnceLock<u32> = OnceLock::new();
/// Calls running now, and the ticker to wake when the first starts.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static TICKER: OnceLock<Thread> = OnceLock::new();

/// Held for as long as a store may run guest code: the ticker advances
/// the epoch (every call's deadline) only while one is held. An idle
/// daemon then sleeps instead of waking 100 times a second (500 idle
/// daemons on one machine spent their CPU on nothing else).
pub struct Ticking(());

impl Ticking {
    pub fn start() -> Self {
        if RUNNING.fetch_add(1, Ordering::AcqRel) == 0 {
            if let Some(t) = TICKER.get() {
                t.unpark();
            }
        }
        Ticking(())
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// For a long-lived process (the daemon) running up to `concurrent` calls
/// at once: instances then take pre-reserved slots instead of mapping and
/// unmapping a 4 GiB reservation per call (which, with the TLB flushes,
/// was most of a warm call). Call before the first `engine()`.
pub fn pool_instances(concurrent: u32) {
    let _ = POOL.set(concurrent.max(1));
}

fn pooling(concurrent: u32) -> PoolingAllocationConfig {
    let mut p = PoolingAllocationConfig::default();
    // One plugin or mapper instance per request at a time; a component
    // holds a few core instances, memories and tables (the WASI adapter's
    // among them). Twice that, so a burst never finds the pool empty.
    let instances = concurrent * 2;
    p.total_component_instances(instances)
        .total_core_instances(instances * 4)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
        // One hostile component cannot take a pool's worth of slots from
        // the other requests (as the store's limiter bounds it too).
        .max_core_instances_per_component(8)
        .max_memories_per_component(4)
        .max_memory_size(4 << 30);
    p
}

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
            let mut config = config();
            if let Some(&n) = POOL.get() {
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(n)));
            }
            let engine = Engine::new(&config).map_err(|e| e.to_string())?;
            let ticking = engine.clone();
            let ticker = std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || loop {
                    // An unpark before the park (a call started in
                    // between) makes the park return at once.
                    if RUNNING.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                })
                .map_err(|e| e.to_string())?;
            let _ = TICKER.set(ticker.thread().clone());
            Ok(engine)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Deadline in ticks for a wall-clock budget (at least one tick).
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / TICK.as_millis()).max(1) as u64
}

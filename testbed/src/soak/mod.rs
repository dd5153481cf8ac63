//! The soak: pods ADDed and DELeted through the built multus (thin) or the
//! shim and daemon (thick), under load, kills, API faults, a full disk and
//! damaged caches, with the node's state checked after each scenario.
//! Every check that fails is counted; `multus-soak` prints the counts and
//! exits non-zero unless duplicates, leaks and leftovers are all 0.

pub mod caches;
pub mod cycles;
pub mod disk;
pub mod faults;
pub mod hostile;
pub mod kills;
mod world;

pub use crate::quantile;
pub use world::{Mode, Pod, World};

use std::time::Duration;

/// What a scenario observed.
#[derive(Default)]
pub struct Outcome {
    pub scenario: String,
    /// Pod ADD/DEL cycles run (or attempted).
    pub cycles: usize,
    pub kills: usize,
    pub api_faults: usize,
    pub disk_full: usize,
    /// An IP held by two live pods of one network.
    pub duplicates: usize,
    /// IPAM state (host-local files, whereabouts allocations and
    /// reservations) left after every pod was deleted.
    pub leaks: usize,
    /// Links, cache files, routes or rules left after every pod was deleted;
    /// also ADDs that failed without rolling back.
    pub leftovers: usize,
    /// Other broken promises: a failure with the wrong code, a DEL that
    /// failed when it must not. Each is described in `problems`.
    pub violations: usize,
    pub problems: Vec<String>,
    pub add: Vec<Duration>,
    pub del: Vec<Duration>,
    pub wall: Duration,
    /// Where the kills landed, and how often.
    pub landed: std::collections::BTreeMap<String, usize>,
}

impl Outcome {
    pub fn new(scenario: impl Into<String>) -> Self {
        Self {
            scenario: scenario.into(),
            ..Default::default()
        }
    }

    /// Records a broken promise of `kind` with what showed it.
    pub fn broke(&mut self, kind: Broken, what: impl Into<String>) {
        match kind {
            Broken::Duplicate => self.duplicates += 1,
            Broken::Leak => self.leaks += 1,
            Broken::Leftover => self.leftovers += 1,
            Broken::Violation => self.violations += 1,
        }
        let what = what.into();
        if self.problems.len() < 20 {
            self.problems.push(format!("{kind:?}: {what}"));
        }
    }

    pub fn clean(&self) -> bool {
        self.duplicates + self.leaks + self.leftovers + self.violations == 0
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Broken {
    Duplicate,
    Leak,
    Leftover,
    Violation,
}

/// A small xorshift generator: the soak's random points, reproducible from
/// the seed it prints.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

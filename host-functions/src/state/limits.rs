//! What one call's instances may take. wasmtime's `StoreLimits` bounds
//! each linear memory alone, and a component may define many (its core
//! modules' memories): here `memoryLimitMib` is the sum over all of them,
//! and table elements (a pointer each, host memory outside the cap) are
//! summed alike.

use wasmtime::ResourceLimiter;

/// Table elements a call may hold in all: 8 MiB of host memory, far above
/// what a compiled module's function tables need.
const TABLE_ELEMENTS: usize = 1 << 20;
/// Core instances, tables and memories one call may create (a component
/// holds a few of each).
const INSTANCES: usize = 8;
const TABLES: usize = 64;
const MEMORIES: usize = 4;

pub struct Limits {
    memory: Sum,
    table: Sum,
}

impl Limits {
    pub fn new(memory: usize) -> Self {
        Self {
            memory: Sum::up_to(memory),
            table: Sum::up_to(TABLE_ELEMENTS),
        }
    }
}

/// The sizes of several memories (or tables) added up, within `max`. A
/// growth that was permitted and then failed stays counted: wasmtime also
/// reports failures it never asked about (a 64-bit table's overflowing
/// `table.grow`), so taking one back could undo another's growth, and
/// counting too much only refuses sooner.
struct Sum {
    max: usize,
    used: usize,
}

impl Sum {
    fn up_to(max: usize) -> Self {
        Self { max, used: 0 }
    }

    /// One of the parts going from `current` to `desired`, if the sum
    /// stays within `max`.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let after = self
            .used
            .saturating_sub(current)
            .checked_add(desired)
            .filter(|&after| after <= self.max);
        if let Some(after) = after {
            self.used = after;
        }
        after.is_some()
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.memory.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.table.grow(current, desired))
    }

    fn instances(&self) -> usize {
        INSTANCES
    }

    fn tables(&self) -> usize {
        TABLES
    }

    fn memories(&self) -> usize {
        MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memory_is_summed_over_every_memory() {
        let mut l = Limits::new(64 * MIB);
        assert!(l.memory_growing(0, 40 * MIB, None).unwrap());
        // A second memory of 40 MiB: each under the cap, not together.
        assert!(!l.memory_growing(0, 40 * MIB, None).unwrap());
        assert!(l.memory_growing(0, 24 * MIB, None).unwrap());
        // The first one growing further: over.
        assert!(!l.memory_growing(40 * MIB, 41 * MIB, None).unwrap());
    }

    #[test]
    fn a_failed_growth_never_frees_another() {
        let mut l = Limits::new(64 * MIB);
        assert!(l.table_growing(0, TABLE_ELEMENTS, None).unwrap());
        // An overflowing grow of a 64-bit table: reported failed, never
        // asked about. The elements held stay counted.
        l.table_grow_failed(wasmtime::Error::msg("overflow"))
            .unwrap();
        assert!(!l.table_growing(0, 1, None).unwrap());
        assert!(l.memory_growing(0, 60 * MIB, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("no memory"))
            .unwrap();
        assert!(!l.memory_growing(0, 8 * MIB, None).unwrap());
    }
}

//! A node's turns on cluster objects (`cluster.take-turn`): flocks of a few
//! files in a directory the admin's config names (the wasm cache dir), so
//! the node's calls that read-modify-write one object (a whereabouts pool)
//! take turns instead of racing each other into 409s.
//!
//! Nothing a config or module says names a file here: an object maps to
//! one of [`SLOTS`] files by a hash of the node, the kind and the name, so
//! the directory never holds more than that many per node, and objects
//! sharing a slot only take turns needlessly. A turn is an optimization,
//! never a guarantee (the API server's resourceVersion guard is that), so
//! every way of not getting one (the budget spent, a full disk) goes on
//! without it: a module holding a slot can cost another call at most that
//! call's wait budget, never fail it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cluster::Kind;

/// Files per node: enough that a node's few busy pools rarely share one.
pub const SLOTS: u64 = 64;

/// What one call may hold at once: slots (each an open file) and objects
/// (each remembered by the host, outside the module's memory limit).
/// whereabouts holds one; a module asking for more goes on without, so no
/// call can take a node's slots or the daemon's descriptors.
pub const MAX_SLOTS: usize = 4;
pub const MAX_OBJECTS: usize = 64;

/// The longest wait between two tries of a held slot. A turn lasts a few
/// API round trips (tens of ms); a longer step would leave the slot idle
/// for most of a queued call's wait.
const MAX_PAUSE: Duration = Duration::from_millis(8);

/// The file of `node`'s slot for object `name` of `kind`: the node's hash
/// and the slot number, so simulated nodes sharing a directory (the fleet)
/// never share a slot, and one node has at most [`SLOTS`] files.
pub fn slot_file(node: &str, kind: &Kind, name: &str) -> String {
    let node_hash = Sha256::digest(node.as_bytes());
    let object = Sha256::digest(
        [node, &kind.group, &kind.plural, name]
            .join("\0")
            .as_bytes(),
    );
    let slot = u64::from_be_bytes(object[..8].try_into().expect("8 bytes")) % SLOTS;
    format!(
        "{}-{slot:02}",
        node_hash[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// One call's turns.
pub struct Turns {
    dir: PathBuf,
    node: String,
    /// What the call may spend waiting, for all its turns together.
    budget: Duration,
    waited: Duration,
    /// Held slots, each with the objects this call holds it for (two of
    /// them may share a slot: the second must not wait for the first).
    held: BTreeMap<String, (File, Vec<(String, String)>)>,
}

impl Turns {
    pub fn new(dir: PathBuf, node: &str, budget: Duration) -> Self {
        Self {
            dir,
            node: node.to_string(),
            budget,
            waited: Duration::ZERO,
            held: BTreeMap::new(),
        }
    }

    /// Takes the turn on the object; false when the call goes on without.
    pub fn take(&mut self, kind: &Kind, name: &str) -> Result<bool, std::io::Error> {
        let slot = slot_file(&self.node, kind, name);
        let object = (kind.to_string(), name.to_string());
        let objects: usize = self.held.values().map(|(_, o)| o.len()).sum();
        if let Some((_, held)) = self.held.get_mut(&slot) {
            if held.contains(&object) {
                return Ok(true);
            }
            if objects >= MAX_OBJECTS {
                return Ok(false);
            }
            held.push(object);
            return Ok(true);
        }
        if self.held.len() >= MAX_SLOTS || objects >= MAX_OBJECTS {
            return Ok(false);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.dir.join(&slot))?;
        let left = self.budget.saturating_sub(self.waited);
        let started = Instant::now();
        let got = crate::flock::exclusive_within(&file, left, MAX_PAUSE)?;
        self.waited += started.elapsed();
        if got {
            self.held.insert(slot, (file, vec![object]));
        }
        Ok(got)
    }

    /// Ends the turn on the object; the slot's file is closed (and so
    /// unlocked) once no object of this call holds it.
    pub fn end(&mut self, kind: &Kind, name: &str) {
        let slot = slot_file(&self.node, kind, name);
        let object = (kind.to_string(), name.to_string());
        if let Some((_, objects)) = self.held.get_mut(&slot) {
            objects.retain(|o| *o != object);
            if objects.is_empty() {
                self.held.remove(&slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::pools;

    #[test]
    fn slots_are_bounded_per_node_and_apart_between_nodes() {
        let files: std::collections::BTreeSet<String> = (0..1000)
            .map(|i| slot_file("node-a", &pools(), &format!("10.{i}.0.0-24")))
            .collect();
        assert!(files.len() as u64 <= SLOTS, "{}", files.len());
        assert!(files
            .iter()
            .all(|f| !f.contains('/') && !f.starts_with('.')));
        let a = slot_file("node-a", &pools(), "p");
        assert_eq!(a, slot_file("node-a", &pools(), "p"), "stable");
        assert_ne!(
            a.split('-').next(),
            slot_file("node-b", &pools(), "p").split('-').next()
        );
        // A name with path characters is only hashed.
        assert!(!slot_file("n", &pools(), "../../etc/passwd").contains('/'));
    }

    /// A second call waits for the first's turn, and goes on without one
    /// once its budget is spent; the first's end frees it.
    #[test]
    fn calls_take_turns_within_their_budget() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("turns");
        let mut first = Turns::new(dir.clone(), "n", Duration::from_secs(2));
        assert!(first.take(&pools(), "p").unwrap());
        let mut second = Turns::new(dir.clone(), "n", Duration::from_millis(100));
        assert!(
            !second.take(&pools(), "p").unwrap(),
            "a held turn was taken"
        );
        // The budget is the call's, all turns together: spent, none.
        assert!(!second.take(&pools(), "p").unwrap());
        assert!(second.waited >= second.budget);
        // Another node's turn on the same object is its own.
        let mut other = Turns::new(dir.clone(), "m", Duration::from_millis(100));
        assert!(other.take(&pools(), "p").unwrap());
        first.end(&pools(), "p");
        let mut third = Turns::new(dir, "n", Duration::from_millis(100));
        assert!(
            third.take(&pools(), "p").unwrap(),
            "an ended turn stayed held"
        );
    }

    /// A call asking for more than its share goes on without: no more
    /// files open, no more objects kept.
    #[test]
    fn a_call_holds_a_few_slots_at_most() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("turns");
        let mut call = Turns::new(dir.clone(), "n", Duration::from_millis(100));
        let got = (0..1000)
            .filter(|i| call.take(&pools(), &format!("p{i}")).unwrap())
            .count();
        assert!(got <= MAX_OBJECTS, "{got}");
        assert_eq!(call.held.len(), MAX_SLOTS);
        assert!(std::fs::read_dir(&dir).unwrap().count() <= MAX_SLOTS);
    }

    /// Two objects of one call in one slot: the second does not wait for
    /// the first, and the slot stays held until both ended.
    #[test]
    fn one_calls_objects_sharing_a_slot() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("turns");
        let slot = slot_file("n", &pools(), "p0");
        let twin = (1..10_000)
            .map(|i| format!("p{i}"))
            .find(|name| slot_file("n", &pools(), name) == slot)
            .expect("a name in the same slot");
        let mut call = Turns::new(dir.clone(), "n", Duration::from_millis(100));
        assert!(call.take(&pools(), "p0").unwrap());
        // Its own slot: a second flock of it would wait out the budget.
        assert!(call.take(&pools(), &twin).unwrap());
        call.end(&pools(), "p0");
        let mut other = Turns::new(dir.clone(), "n", Duration::from_millis(50));
        assert!(!other.take(&pools(), "p0").unwrap(), "freed while held");
        call.end(&pools(), &twin);
        let mut other = Turns::new(dir, "n", Duration::from_millis(50));
        assert!(other.take(&pools(), "p0").unwrap());
    }
}

//! `kill -9` at a random point of a pod's ADD: of multus itself (thin) or
//! of the daemon serving the shim (thick, then restarted, as its
//! DaemonSet would); then the runtime's DEL, retried as kubelet retries it,
//! must leave nothing of the pod. The points fall anywhere from before the
//! first delegate to after the cache write: before, between and after
//! delegates, inside the wasm calls and the cache write.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use super::{Broken, Mode, Outcome, Pod, Rng, World};

/// `kills` pods, each killed after a random delay below `window`.
pub fn run(w: &mut World, kills: usize, window: Duration, rng: &mut Rng) -> Result<Outcome> {
    let mut o = Outcome::new("kill -9 mid-ADD, then DEL");
    let started = Instant::now();
    let window_us = window.as_micros() as u64;
    for i in 0..kills {
        let pod = Pod::new(format!("kill-{i}"))?;
        let mut child = w.spawn("ADD", &pod)?;
        std::thread::sleep(Duration::from_micros(rng.below(window_us)));
        match w.mode {
            Mode::Thin => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Mode::Thick => {
                w.kill_daemon();
                let _ = child.wait();
                w.start_daemon()?;
            }
        }
        o.kills += 1;
        *o.landed.entry(landed(w, &pod).into()).or_default() += 1;
        let del_started = Instant::now();
        let del = w.del_retrying(&pod, &w.conf(), 5)?;
        o.del.push(del_started.elapsed());
        if !del.ok() {
            o.broke(
                Broken::Violation,
                format!("DEL {} after the kill: {}", pod.name, del.stdout.trim()),
            );
        }
        w.check_pod_clean(&pod, &mut o);
        o.cycles += 1;
    }
    o.wall = started.elapsed();
    w.check_node_clean(&mut o);
    Ok(o)
}

/// Where in the ADD the kill landed, from the cache multus left: none
/// yet (before the first delegate), written but not complete (during the
/// delegates), or complete (the ADD was done).
fn landed(w: &World, pod: &Pod) -> &'static str {
    let Ok(bytes) = std::fs::read(w.cni_dir().join(pod.container_id())) else {
        return "before the cache";
    };
    let cache: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if cache["complete"] == true {
        "after the ADD"
    } else {
        "during the delegates"
    }
}

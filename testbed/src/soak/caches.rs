//! DEL with a damaged or foreign cache: truncated, not JSON, or the
//! scratch file Go multus writes. DEL either frees everything (the node
//! check after says whether it did) or fails naming the file (and then, the file removed as its message says, DEL
//! falls back to the conf and frees everything). Our cache format is the
//! one the first release wrote (`multusCacheV1`, unchanged), so "an older
//! version of ours" is the current file.

use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use super::{Broken, Outcome, Pod, World};

/// The ways a cache file is rewritten before DEL.
fn damage(how: &str, cache: &[u8]) -> Vec<u8> {
    match how {
        "truncated" => cache[..cache.len() / 2].to_vec(),
        "not JSON" => b"\x00\x01garbage".to_vec(),
        _ => {
            // Go multus's scratch list: each delegate's conf bytes, base64.
            let ours: Value = serde_json::from_slice(cache).unwrap_or(Value::Null);
            let list: Vec<Value> = ours["delegates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| json!({"Bytes": d["config"], "ifnameRequest": d["ifName"], "name": d["networkName"]}))
                .collect();
            serde_json::to_vec(&list).expect("serializes")
        }
    }
}

pub fn run(w: &World) -> Result<Outcome> {
    let mut o = Outcome::new("damaged and foreign caches at DEL");
    let started = Instant::now();
    for how in ["truncated", "not JSON", "Go multus"] {
        let pod = Pod::new(format!("cache-{}", how.replace(' ', "-").to_lowercase()))?;
        let (add, took) = w.run("ADD", &pod)?;
        o.add.push(took);
        if !add.ok() {
            o.broke(
                Broken::Violation,
                format!("{how}: ADD: {}", add.stdout.trim()),
            );
            continue;
        }
        let file = w.cni_dir().join(pod.container_id());
        std::fs::write(&file, damage(how, &std::fs::read(&file)?))?;
        let (del, took) = w.run("DEL", &pod)?;
        o.del.push(took);
        if !del.ok() {
            if !del.stdout.contains(&file.display().to_string()) {
                o.broke(
                    Broken::Violation,
                    format!(
                        "{how}: DEL failed without naming the file: {}",
                        del.stdout.trim()
                    ),
                );
            }
            std::fs::remove_file(&file)?;
            let (again, took) = w.run("DEL", &pod)?;
            o.del.push(took);
            if !again.ok() {
                o.broke(
                    Broken::Violation,
                    format!(
                        "{how}: DEL after removing the file: {}",
                        again.stdout.trim()
                    ),
                );
            }
        }
        w.check_pod_clean(&pod, &mut o);
        o.cycles += 1;
    }
    o.wall = started.elapsed();
    w.check_node_clean(&mut o);
    Ok(o)
}

//! Pods ADDed `concurrency` at a time, all alive together (so any IP two
//! of them hold in one network is a duplicate), then DELeted at once;
//! `cycles` pods in all. Every ADD and DEL must succeed.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;

use super::{Broken, Outcome, Pod, World};

pub fn run(w: &World, cycles: usize, concurrency: usize) -> Result<Outcome> {
    let mut o = Outcome::new("ADD/DEL cycles");
    let started = Instant::now();
    let mut next = 0;
    while next < cycles {
        let n = concurrency.min(cycles - next);
        let pods: Vec<Pod> = (next..next + n)
            .map(|i| Pod::new(format!("cyc-{i}")))
            .collect::<Result<_>>()?;
        next += n;
        for cmd in ["ADD", "DEL"] {
            let outs = std::thread::scope(|s| {
                let handles: Vec<_> = pods
                    .iter()
                    .map(|p| s.spawn(move || w.run(cmd, p)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("soak thread"))
                    .collect::<Result<Vec<_>>>()
            })?;
            for (pod, (out, took)) in pods.iter().zip(outs) {
                if !out.ok() {
                    o.broke(
                        Broken::Violation,
                        format!("{cmd} {}: {}", pod.name, out.stdout.trim()),
                    );
                }
                match cmd {
                    "ADD" => o.add.push(took),
                    _ => o.del.push(took),
                }
            }
            if cmd == "ADD" {
                duplicates(w, &pods, &mut o);
            }
        }
        for p in &pods {
            w.check_pod_clean(p, &mut o);
        }
        o.cycles += n;
    }
    o.wall = started.elapsed();
    w.check_node_clean(&mut o);
    Ok(o)
}

/// Every address held by two live pods of the same network.
fn duplicates(w: &World, pods: &[Pod], o: &mut Outcome) {
    let mut holders: BTreeMap<(String, String), &str> = BTreeMap::new();
    for p in pods {
        for (net, ips) in w.addresses(p) {
            for ip in ips {
                if let Some(other) = holders.insert((net.clone(), ip.clone()), &p.name) {
                    o.broke(
                        Broken::Duplicate,
                        format!("{net}: {ip} held by {other} and {}", p.name),
                    );
                }
            }
        }
    }
}

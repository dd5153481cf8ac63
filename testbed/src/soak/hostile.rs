//! Hostile modules at scale: pods whose conflist runs a module that floods
//! the log, loops in host calls, allocates to its cap, spins, returns an
//! enormous or a malformed result, tries every denied call in one run, or
//! races the others on one store key; `count` of them at once beside as
//! many honest pods. The honest pods must all attach and detach as ever;
//! each hostile one must fail with an error naming the module (the log
//! flood is cut and succeeds; one racer wins each round), and leave
//! nothing.

use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use super::{Broken, Outcome, Pod, World};

/// The probes, and whether the pod's ADD may succeed.
const PROBES: &[(&str, Expect)] = &[
    ("log-flood", Expect::Succeeds),
    ("host-call-loop", Expect::Fails("deadline")),
    ("memory", Expect::Fails("sandbox-probe")),
    ("loop", Expect::Fails("deadline")),
    ("huge-result", Expect::Fails("sandbox-probe")),
    ("malformed-result", Expect::Fails("not-an-address")),
    ("every-denied", Expect::Fails("denied")),
    ("store-race", Expect::OneWins),
];

#[derive(Clone, Copy)]
enum Expect {
    Succeeds,
    /// Fails naming the module and this.
    Fails(&'static str),
    /// Of the racers of a round, exactly one succeeds.
    OneWins,
}

/// A hostile pod's conf: the reference bridge (the honest pods' own, so the
/// node keeps one bridge) and host-local, then the probe module, its deadline short so the spinners end soon.
fn conf(w: &World, probe: &str) -> Vec<u8> {
    let list = json!({"cniVersion": "1.0.0", "name": "hostile", "plugins": [
        {"type": "bridge", "bridge": "soakbr0",
         "ipam": {"type": "host-local", "dataDir": w.ipam_dir(), "ranges": [[{"subnet": "10.213.0.0/16"}]]}},
        {"type": "sandbox-probe", "probe": probe, "dataDir": w.work.path().join("probe-store")},
    ]});
    let mut c: Value = serde_json::from_slice(&w.conf()).expect("conf is JSON");
    c["delegates"] = json!([list]);
    c["wasmPlugins"]["sandbox-probe"] = json!({"timeoutMs": 3000});
    serde_json::to_vec(&c).expect("serializes")
}

pub fn run(w: &World, count: usize) -> Result<Outcome> {
    let mut o = Outcome::new("hostile modules beside honest pods");
    let started = Instant::now();
    let honest: Vec<Pod> = (0..count)
        .map(|i| Pod::new(format!("honest-{i}")))
        .collect::<Result<_>>()?;
    let hostile: Vec<(Pod, &str, Expect)> = (0..count)
        .map(|i| {
            let (probe, expect) = PROBES[i % PROBES.len()];
            Ok((Pod::new(format!("hostile-{i}"))?, probe, expect))
        })
        .collect::<Result<_>>()?;
    let confs: Vec<Vec<u8>> = hostile.iter().map(|(_, p, _)| conf(w, p)).collect();
    let (honest_out, hostile_out) = std::thread::scope(|s| {
        let h: Vec<_> = honest
            .iter()
            .map(|p| s.spawn(move || w.run("ADD", p)))
            .collect();
        let b: Vec<_> = hostile
            .iter()
            .zip(&confs)
            .map(|((p, _, _), c)| s.spawn(move || w.run_with("ADD", p, c)))
            .collect();
        let join = |v: Vec<std::thread::ScopedJoinHandle<'_, Result<_>>>| {
            v.into_iter()
                .map(|h| h.join().expect("soak thread"))
                .collect::<Result<Vec<_>>>()
        };
        (join(h), join(b))
    });
    for (p, (out, took)) in honest.iter().zip(honest_out?) {
        o.add.push(took);
        if !out.ok() {
            o.broke(
                Broken::Violation,
                format!(
                    "honest {} failed beside hostile modules: {}",
                    p.name,
                    out.stdout.trim()
                ),
            );
        }
    }
    let mut race_wins = 0;
    for ((p, probe, expect), (out, _)) in hostile.iter().zip(hostile_out?) {
        match expect {
            Expect::Succeeds if !out.ok() => o.broke(
                Broken::Violation,
                format!("{probe}: failed: {}", out.stdout.trim()),
            ),
            Expect::Fails(_) if out.ok() => {
                o.broke(Broken::Violation, format!("{probe}: succeeded"))
            }
            Expect::Fails(what)
                if !(out.stdout.contains("sandbox-probe") && out.stdout.contains(what)) =>
            {
                o.broke(
                    Broken::Violation,
                    format!(
                        "{probe}: the error names neither the module nor {what:?}: {}",
                        out.stdout.trim()
                    ),
                )
            }
            Expect::Fails(_) => w.check_pod_clean(p, &mut o),
            Expect::OneWins => race_wins += usize::from(out.ok()),
            Expect::Succeeds => {}
        }
    }
    if hostile.iter().any(|(_, _, e)| matches!(e, Expect::OneWins)) && race_wins != 1 {
        o.broke(
            Broken::Violation,
            format!("store-race: {race_wins} winners, want 1"),
        );
    }
    for (p, (out, took)) in honest.iter().zip(
        honest
            .iter()
            .map(|p| w.run("DEL", p))
            .collect::<Result<Vec<_>>>()?,
    ) {
        o.del.push(took);
        if !out.ok() {
            o.broke(
                Broken::Violation,
                format!("honest {} DEL: {}", p.name, out.stdout.trim()),
            );
        }
        w.check_pod_clean(p, &mut o);
    }
    for ((p, probe, _), c) in hostile.iter().zip(&confs) {
        let (out, _) = w.run_with("DEL", p, c)?;
        if !out.ok() {
            o.broke(
                Broken::Violation,
                format!("{probe} DEL: {}", out.stdout.trim()),
            );
        }
        w.check_pod_clean(p, &mut o);
    }
    o.cycles = 2 * count;
    o.wall = started.elapsed();
    let store = crate::files_under(&w.work.path().join("probe-store"));
    if store.iter().any(|f| !f.ends_with("lock")) {
        o.broke(Broken::Leftover, format!("probe store left {store:?}"));
    }
    w.check_node_clean(&mut o);
    super::world::check_host_local(&w.ipam_dir(), "hostile", &mut o);
    Ok(o)
}

//! The API server failing under the cluster network's IPAM: 500s, 429s,
//! down (connections refused) and answers slowed past the host-call
//! timeout, during ADD and during DEL.
//! Every ADD either succeeds or fails with code 11 leaving nothing; every
//! DEL either succeeds or fails keeping the cache, and its retry (the API
//! healthy again) frees everything.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use super::{Broken, Outcome, Pod, World};

/// One way the API server misbehaves, for the next requests.
struct Fault {
    what: &'static str,
    inject: fn(&World),
}

const FAULTS: &[Fault] = &[
    Fault {
        what: "500 on the pool write",
        inject: |w| w.api.fail_next("PUT", "/ippools/", 500, 1),
    },
    Fault {
        what: "500 on every pool write",
        inject: |w| w.api.fail_next("PUT", "/ippools/", 500, 100),
    },
    Fault {
        what: "429 on reservations",
        inject: |w| {
            w.api
                .fail_next("POST", "/overlappingrangeipreservations", 429, 2)
        },
    },
    Fault {
        what: "500 on reservation deletes",
        inject: |w| {
            w.api
                .fail_next("DELETE", "/overlappingrangeipreservations/", 500, 100)
        },
    },
    Fault {
        what: "the API server down",
        inject: |w| w.api.set_down(true),
    },
    Fault {
        what: "pool reads slowed 2 s",
        inject: |w| w.api.delay("/ippools/", Duration::from_secs(2), 1),
    },
    Fault {
        what: "pool reads slowed past the host-call timeout",
        inject: |w| w.api.delay("/ippools/", Duration::from_secs(12), 1),
    },
];

fn code(out: &crate::CniOutput) -> u64 {
    serde_json::from_str::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["code"].as_u64())
        .unwrap_or(0)
}

pub fn run(w: &World) -> Result<Outcome> {
    let mut o = Outcome::new("API faults during ADD and DEL");
    let started = Instant::now();
    let conf = w.conf();
    for (i, f) in FAULTS.iter().enumerate() {
        // Faults are counted when they take effect, not when set up; one
        // that never fires in either phase tested nothing and is a failure
        // of the soak itself.
        let mut fired_in_case = 0;
        for during in ["ADD", "DEL"] {
            let pod = Pod::new(format!("fault-{i}-{}", during.to_lowercase()))?;
            let fired_before = w.api.faults_fired();
            if during == "ADD" {
                (f.inject)(w);
            }
            let (add, took) = w.run_with("ADD", &pod, &conf)?;
            o.add.push(took);
            if !add.ok() {
                if code(&add) != 11 {
                    o.broke(
                        Broken::Violation,
                        format!(
                            "{}: ADD failed with code {}, not 11: {}",
                            f.what,
                            code(&add),
                            add.stdout.trim()
                        ),
                    );
                }
                if w.api.faults_fired() > fired_before {
                    fired_in_case += 1;
                }
                w.check_pod_clean(&pod, &mut o);
            } else {
                if during == "DEL" {
                    (f.inject)(w);
                }
                let (del, took) = w.run_with("DEL", &pod, &conf)?;
                if w.api.faults_fired() > fired_before {
                    // Counted before the retry below clears the faults.
                    fired_in_case += 1;
                }
                o.del.push(took);
                if !del.ok() && !w.cni_dir().join(pod.container_id()).exists() {
                    o.broke(
                        Broken::Violation,
                        format!(
                            "{}: DEL failed and dropped the cache it needs to retry",
                            f.what
                        ),
                    );
                }
                w.api.clear_faults();
                let retried = w.del_retrying(&pod, &conf, 3)?;
                if !retried.ok() {
                    o.broke(
                        Broken::Violation,
                        format!("{}: DEL retry failed: {}", f.what, retried.stdout.trim()),
                    );
                }
                w.check_pod_clean(&pod, &mut o);
            }
            w.api.clear_faults();
            o.cycles += 1;
            // Each case on its own, so a leak names the fault behind it.
            let before = o.problems.len();
            w.check_node_clean(&mut o);
            for p in &mut o.problems[before..] {
                *p = format!("{} during {during}: {p}", f.what);
            }
        }
        if fired_in_case == 0 {
            o.broke(
                Broken::Violation,
                format!("{}: the fault never fired, during ADD or DEL", f.what),
            );
        }
        o.api_faults += fired_in_case;
    }
    o.wall = started.elapsed();
    Ok(o)
}

//! Latency of pod ADD/DEL: the reference bridge + host-local exec'd directly
//! (what a runtime without multus does) vs the same network through multus,
//! and multus with two networks; fresh pod netns every cycle, one table.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use multus::testbed::{confs, enter, exec_cni, reference_plugin_dir, Netns};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "ADD/DEL latency: reference plugins direct vs through multus")]
struct Args {
    /// Cycles (ADD + DEL in a fresh pod netns) per scenario.
    #[arg(long, default_value_t = 50)]
    cycles: usize,
    /// The multus binary (default: next to this one).
    #[arg(long)]
    multus: Option<PathBuf>,
}

struct Scenario {
    name: &'static str,
    program: PathBuf,
    stdin: Vec<u8>,
    /// The plugin is exec'd directly: DEL gets the ADD result as `prevResult`,
    /// as libcni gives it from its cache.
    direct: bool,
}

#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

fn quantile(v: &[Duration], q: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[idx]
}

/// A single-plugin conflist as the stdin a runtime gives its one plugin.
fn direct_stdin(list: &Value) -> Vec<u8> {
    let mut p = list["plugins"][0].clone();
    p["name"] = list["name"].clone();
    p["cniVersion"] = list["cniVersion"].clone();
    serde_json::to_vec(&p).expect("conf serializes")
}

fn run(s: &Scenario, cycles: usize) -> Result<Samples> {
    let mut out = Samples::default();
    for i in 0..cycles {
        let pod = Netns::new("bench-pod")?;
        let netns = pod.path();
        let cid = format!("bench{i}");
        let env = |cmd| {
            [
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", cid.as_str()),
                ("CNI_NETNS", netns.to_str().unwrap_or_default()),
                ("CNI_IFNAME", "eth0"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench",
                ),
                ("CNI_PATH", "/usr/lib/cni"),
            ]
        };
        let t = Instant::now();
        let added = exec_cni(&s.program, None, &env("ADD"), &s.stdin)?;
        out.add.push(t.elapsed());
        if !added.ok() {
            bail!("{} ADD failed: {} {}", s.name, added.stdout, added.stderr);
        }
        let del_stdin = if s.direct {
            let mut conf: Value = serde_json::from_slice(&s.stdin)?;
            conf["prevResult"] = added.json();
            serde_json::to_vec(&conf)?
        } else {
            s.stdin.clone()
        };
        let t = Instant::now();
        let deleted = exec_cni(&s.program, None, &env("DEL"), &del_stdin)?;
        out.del.push(t.elapsed());
        if !deleted.ok() {
            bail!(
                "{} DEL failed: {} {}",
                s.name,
                deleted.stdout,
                deleted.stderr
            );
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let multus = match args.multus {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no dir")?
            .join("multus"),
    };
    let plugins = reference_plugin_dir();
    let node = Netns::new("bench-node").context("creating the node netns (needs root)")?;
    node.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p",
    ])?;
    node.ip(&["link", "set", "uplink0", "up"])?;
    enter(&node)?;
    let work = tempfile::tempdir()?;
    let data = work.path().join("ipam");
    let cluster = confs::bridge_host_local("cluster", "cni0", "10.10.0.0/16", &data);
    let extra = confs::macvlan_host_local("extra", "uplink0", "10.11.0.0/16", &data);
    let multus_conf = |delegates: &[Value]| -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&confs::multus_delegates(
            delegates,
            &work.path().join("multus"),
            &plugins,
        ))?)
    };
    let scenarios = [
        Scenario {
            name: "(a) bridge+host-local exec'd directly",
            program: plugins.join("bridge"),
            stdin: direct_stdin(&cluster),
            direct: true,
        },
        Scenario {
            name: "(b) same network through multus",
            program: multus.clone(),
            stdin: multus_conf(std::slice::from_ref(&cluster))?,
            direct: false,
        },
        Scenario {
            name: "(c) multus, bridge + macvlan delegates",
            program: multus,
            stdin: multus_conf(&[cluster.clone(), extra])?,
            direct: false,
        },
    ];
    // One warm-up cycle each so page cache and first-use costs are not counted.
    for s in &scenarios {
        run(s, 1)?;
    }
    let results: Vec<Samples> = scenarios
        .iter()
        .map(|s| run(s, args.cycles))
        .collect::<Result<_>>()?;

    println!(
        "\n{} cycles per scenario, fresh pod netns each; times in ms\n",
        args.cycles
    );
    println!("| scenario | ADD median | ADD p95 | DEL median | DEL p95 |");
    println!("|---|---:|---:|---:|---:|");
    for (s, r) in scenarios.iter().zip(&results) {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.name,
            quantile(&r.add, 0.5),
            quantile(&r.add, 0.95),
            quantile(&r.del, 0.5),
            quantile(&r.del, 0.95)
        );
    }
    let over = |i: usize, f: fn(&Samples) -> &Vec<Duration>| {
        quantile(f(&results[i]), 0.5) - quantile(f(&results[0]), 0.5)
    };
    println!(
        "\nmultus overhead over (a), medians: ADD {:+.2} ms, DEL {:+.2} ms (target: ADD < 3 ms)",
        over(1, |r| &r.add),
        over(1, |r| &r.del)
    );
    Ok(())
}

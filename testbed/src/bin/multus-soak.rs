//! The soak: load, kills, API faults, a full disk and damaged caches, thin
//! and thick, through the built binaries in real network namespaces. Prints
//! a table per mode and, last, one summary line; exits 1 if any pod left a
//! duplicate IP, a leak or a leftover, or a promise (DEL retriable, ADD
//! failing cleanly with code 11) was broken.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use multus_testbed::soak::{self, quantile, Mode, Outcome, Rng, World};

#[derive(Parser)]
#[command(
    about = "Soak multus: load, kills, API faults, disk full, damaged caches; thin and thick"
)]
struct Args {
    /// The few-minute version CI runs: 100 cycles, 4 kills per mode.
    #[arg(long)]
    short: bool,
    /// Pod ADD/DEL cycles in the load scenario (default 1000, 100 with --short).
    #[arg(long)]
    cycles: Option<usize>,
    /// Pods alive at once in the load scenario.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// kill -9 mid-ADD per mode (default 20, 4 with --short).
    #[arg(long)]
    kills: Option<usize>,
    /// The random points' seed (default: the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// thin, thick or both.
    #[arg(long, default_value = "both")]
    mode: String,
    /// Where multus, multus-shim and multus-daemon are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The built wasm plugins (default: target/plugins).
    #[arg(long)]
    plugins: Option<PathBuf>,
}

fn modes(s: &str) -> Result<Vec<Mode>> {
    Ok(match s {
        "thin" => vec![Mode::Thin],
        "thick" => vec![Mode::Thick],
        "both" => vec![Mode::Thin, Mode::Thick],
        other => anyhow::bail!("--mode: {other:?} is not thin, thick or both"),
    })
}

fn soak_mode(
    mode: Mode,
    args: &Args,
    bin_dir: &std::path::Path,
    plugins: &std::path::Path,
    rng: &mut Rng,
) -> Result<Vec<Outcome>> {
    let cycles = args.cycles.unwrap_or(if args.short { 100 } else { 1000 });
    let kills = args.kills.unwrap_or(if args.short { 4 } else { 20 });
    let hostile = if args.short { 24 } else { 50 };
    let mut w = World::new(bin_dir, plugins, mode)?;
    // One pod first: it makes the bridge (which stays) and compiles the
    // modules, so the baseline is the node with no pod.
    let mut warm = soak::cycles::run(&w, 1, 1)?;
    warm.scenario = "warm-up".into();
    w.take_baseline()?;
    let mut solo = soak::cycles::run(&w, 5, 1)?;
    solo.scenario = "one pod at a time".into();
    // A kill lands anywhere in an unloaded ADD, or just after it.
    let window = Duration::from_secs_f64(quantile(&solo.add, 0.95) / 1e3 * 1.2);
    let mut out = vec![warm, solo, soak::cycles::run(&w, cycles, args.concurrency)?];
    out.push(soak::kills::run(&mut w, kills, window, rng)?);
    out.push(soak::faults::run(&w)?);
    out.push(soak::disk::run(&w)?);
    out.push(soak::caches::run(&w)?);
    out.push(soak::hostile::run(&w, hostile)?);
    Ok(out)
}

fn print_table(mode: Mode, outcomes: &[Outcome]) {
    println!("\n{mode:?} mode (ms)\n");
    println!("| scenario | cycles | kills | API faults | disk full | duplicates | leaks | leftovers | violations | pods/s | ADD p50 | ADD p95 | ADD p99 | DEL p50 | DEL p95 | DEL p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        let rate = o.cycles as f64 / o.wall.as_secs_f64().max(1e-9);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {rate:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            o.scenario, o.cycles, o.kills, o.api_faults, o.disk_full, o.duplicates, o.leaks, o.leftovers, o.violations,
            quantile(&o.add, 0.5), quantile(&o.add, 0.95), quantile(&o.add, 0.99),
            quantile(&o.del, 0.5), quantile(&o.del, 0.95), quantile(&o.del, 0.99),
        );
    }
    for o in outcomes.iter().filter(|o| !o.landed.is_empty()) {
        let at: Vec<String> = o.landed.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!("  kills landed: {}", at.join(", "));
    }
    for o in outcomes {
        for p in &o.problems {
            println!("  {}: {p}", o.scenario);
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let here = std::env::current_exe()?
        .parent()
        .context("no dir")?
        .to_path_buf();
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| here.clone());
    let plugins = args
        .plugins
        .clone()
        .unwrap_or_else(|| here.join("../plugins"));
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!("soak seed {seed} (--seed {seed} repeats the kill points)");
    let mut rng = Rng::new(seed);
    let mut all = Vec::new();
    for mode in modes(&args.mode)? {
        let outcomes = soak_mode(mode, &args, &bin_dir, &plugins, &mut rng)?;
        print_table(mode, &outcomes);
        all.extend(outcomes);
    }
    let sum = |f: fn(&Outcome) -> usize| all.iter().map(f).sum::<usize>();
    let concurrency = args.concurrency;
    println!(
        "soak: cycles={} concurrency={concurrency} kills={} api_faults={} disk_full={} duplicates={} leaks={} leftovers={}{}",
        sum(|o| o.cycles),
        sum(|o| o.kills),
        sum(|o| o.api_faults),
        sum(|o| o.disk_full),
        sum(|o| o.duplicates),
        sum(|o| o.leaks),
        sum(|o| o.leftovers),
        match sum(|o| o.violations) {
            0 => String::new(),
            v => format!(" violations={v}"),
        }
    );
    if all.iter().all(Outcome::clean) {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

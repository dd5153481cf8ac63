//! A full disk: the IPAM data or the cache directory on a small tmpfs,
//! filled to the last byte. ADD must fail with a clear error and leave
//! nothing half-written (no reservation, no cache or temp file, no link);
//! with the space back, ADD and DEL work again.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{Broken, Outcome, Pod, World};

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .context("mount")?
            .success();
        if !ok {
            bail!("mount tmpfs on {} failed (needs root)", dir.display());
        }
        Ok(Self(dir))
    }

    /// Writes a file until the filesystem says it is full.
    fn fill(&self) -> Result<()> {
        let mut f = std::fs::File::create(self.0.join("filler"))?;
        let chunk = vec![0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
    }

    fn free(&self) -> Result<()> {
        Ok(std::fs::remove_file(self.0.join("filler"))?)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

pub fn run(w: &World) -> Result<Outcome> {
    let mut o = Outcome::new("disk full (IPAM data, then the cache dir)");
    let started = Instant::now();
    for full in ["ipam", "cache"] {
        let small = w.work.path().join(format!("small-{full}"));
        let tmpfs = Tmpfs::mount(&small, "256k")?;
        let (cni_dir, ipam_dir) = match full {
            "ipam" => (w.cni_dir(), small.clone()),
            _ => (small.clone(), w.ipam_dir()),
        };
        let conf = w.conf_in(&cni_dir, &ipam_dir);
        let pod = Pod::new(format!("full-{full}"))?;
        tmpfs.fill()?;
        o.disk_full += 1;
        let (add, took) = w.run_with("ADD", &pod, &conf)?;
        o.add.push(took);
        if add.ok() {
            o.broke(
                Broken::Violation,
                format!("ADD succeeded with the {full} disk full"),
            );
        } else if !add.stdout.contains("space") {
            o.broke(
                Broken::Violation,
                format!(
                    "{full} disk full: the error does not say so: {}",
                    add.stdout.trim()
                ),
            );
        }
        w.check_pod_clean(&pod, &mut o);
        let half: Vec<String> = crate::files_under(&small)
            .into_iter()
            .filter(|f| f != "filler" && !f.ends_with("/lock"))
            .collect();
        if !half.is_empty() {
            o.broke(Broken::Leftover, format!("{full} disk full: left {half:?}"));
        }
        tmpfs.free()?;
        w.check_node_clean_in(&cni_dir, &ipam_dir, &mut o);
        let (add, took) = w.run_with("ADD", &pod, &conf)?;
        o.add.push(took);
        let (del, took) = w.run_with("DEL", &pod, &conf)?;
        o.del.push(took);
        if !add.ok() || !del.ok() {
            o.broke(
                Broken::Violation,
                format!(
                    "{full}: with the space back: ADD {} DEL {}",
                    add.stdout.trim(),
                    del.stdout.trim()
                ),
            );
        }
        w.check_pod_clean(&pod, &mut o);
        w.check_node_clean_in(&cni_dir, &ipam_dir, &mut o);
        o.cycles += 1;
    }
    o.wall = started.elapsed();
    Ok(o)
}

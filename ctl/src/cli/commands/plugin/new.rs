//! `multusctl plugin new NAME --world W [--dir DIR]`: writes a plugin crate
//! that builds with `cargo build --release` (target wasm32-wasip2) and runs
//! under `multusctl plugin run --dry-run` as it comes.

use std::path::PathBuf;

use crate::scaffold::{self, World};

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: its crate and its CNI type.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// What kind of plugin.
    #[arg(long, value_enum)]
    pub world: World,
    /// Where the crate's directory goes [default: the current directory].
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

pub fn run(a: &NewArgs) -> i32 {
    if !scaffold::valid_name(&a.name) {
        eprintln!(
            "multusctl plugin new: NAME {:?}: use lowercase letters, digits and dashes, starting with a letter",
            a.name
        );
        return 2;
    }
    let root = a.dir.join(&a.name);
    if root.exists() {
        eprintln!(
            "multusctl plugin new: {} already exists; not touching it",
            root.display()
        );
        return 2;
    }
    // Written under a temporary name and renamed, so a failure leaves no
    // half-made crate.
    let tmp = a.dir.join(format!(".{}.new", a.name));
    let write = || -> std::io::Result<()> {
        for (rel, contents) in scaffold::files(&a.name, a.world) {
            let path = tmp.join(rel);
            std::fs::create_dir_all(path.parent().expect("relative paths have parents"))?;
            std::fs::write(&path, contents)?;
        }
        std::fs::rename(&tmp, &root)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        eprintln!("multusctl plugin new: writing {}: {e}", root.display());
        return 1;
    }
    println!(
        "{}: a {} plugin; see its README.md to build and try it",
        root.display(),
        a.world.as_str()
    );
    0
}

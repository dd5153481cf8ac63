//! `multusctl plugin inspect`: world, WIT package, imports, exports, size,
//! sha256 and the import audit's verdict per role, as text or `--json`.
//! Exits 0 when multus would accept the module in some role, 1 when in
//! none, 2 when it is not a readable component.

use std::path::PathBuf;

use crate::{compile, inspect};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The component to inspect.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InspectArgs) -> i32 {
    let report = compile::engine().and_then(|engine| inspect::inspect(&engine, &args.module));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("multusctl plugin inspect: {e}");
            return 2;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    } else {
        print!("{}", report.text());
    }
    if report.accepted {
        0
    } else {
        1
    }
}

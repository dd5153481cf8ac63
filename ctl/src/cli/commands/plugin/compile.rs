//! `multusctl plugin compile`: precompiles modules into the artifact cache.
//! The `multus` binary execs it on a cache miss; admins and plugin authors
//! run it after dropping a module in.

use std::path::PathBuf;

use multus::config::wasm::DEFAULT_CACHE_DIR;

use crate::compile;

#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// The components to compile.
    #[arg(required = true, value_name = "MODULE")]
    pub modules: Vec<PathBuf>,
    /// The artifact cache (`wasmCacheDir` of the multus conf).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Index the module's digest under this path instead of its own (the
    /// path multus will load it from); only with one module.
    #[arg(long, value_name = "PATH")]
    pub index_as: Option<PathBuf>,
}

pub fn run(args: &CompileArgs) -> i32 {
    if args.index_as.is_some() && args.modules.len() != 1 {
        eprintln!("multusctl plugin compile: --index-as takes exactly one MODULE");
        return 2;
    }
    let engine = match compile::engine() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("multusctl plugin compile: {e}");
            return 1;
        }
    };
    for module in &args.modules {
        let index_as = args.index_as.as_ref().unwrap_or(module);
        match compile::precompile(&engine, module, index_as, &args.cache_dir) {
            Ok(p) => eprintln!(
                "{}: sha256 {}{}",
                module.display(),
                p.sha256,
                if p.compiled {
                    ", compiled"
                } else {
                    ", already compiled"
                }
            ),
            Err(e) => {
                eprintln!("multusctl plugin compile: {e}");
                return 1;
            }
        }
    }
    0
}

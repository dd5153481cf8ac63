//! `multusctl plugin`: tools for the wasm plugins, one file per subcommand.

pub mod compile;
pub mod inspect;

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Compile `.wasm` components into the cache multus loads them from.
    Compile(compile::CompileArgs),
    /// Show what a `.wasm` plugin is and whether multus would run it.
    Inspect(inspect::InspectArgs),
}

pub fn run(cmd: &PluginCommand) -> i32 {
    match cmd {
        PluginCommand::Compile(args) => compile::run(args),
        PluginCommand::Inspect(args) => inspect::run(args),
    }
}

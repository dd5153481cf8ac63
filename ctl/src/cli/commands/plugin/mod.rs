//! `multusctl plugin`: tools for the wasm plugins, one file per subcommand.

pub mod aggregate;
pub mod compile;
pub mod inspect;
pub mod list;
pub mod new;
pub mod push;
pub mod run;
pub mod sync;

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Compile `.wasm` components into the cache multus loads them from.
    Compile(compile::CompileArgs),
    /// Show what a `.wasm` plugin is and whether multus would run it.
    Inspect(inspect::InspectArgs),
    /// Write a new plugin crate for a world.
    New(new::NewArgs),
    /// Run a plugin once: `--dry-run` records its host calls and changes
    /// nothing; `--netns` runs it for real there.
    Run(Box<run::RunArgs>),
    /// Create or update a WasmPlugin object (and the ConfigMap with its
    /// bytes) from a built module: every node's `plugin sync` places it.
    Push(push::PushArgs),
    /// WasmPlugin objects and their rollout over the nodes.
    List(list::ListArgs),
    /// This node's side of WasmPlugin objects: place, replace and remove
    /// modules as the objects say.
    Sync(sync::SyncArgs),
    /// Sum every node's WasmPluginNode into the WasmPlugins' status (one
    /// per cluster).
    Aggregate(aggregate::AggregateArgs),
}

pub fn run(cmd: &PluginCommand) -> i32 {
    match cmd {
        PluginCommand::Compile(args) => compile::run(args),
        PluginCommand::Inspect(args) => inspect::run(args),
        PluginCommand::Run(args) => run::run(args),
        PluginCommand::New(args) => new::run(args),
        PluginCommand::Push(args) => push::run(args),
        PluginCommand::List(args) => list::run(args),
        PluginCommand::Sync(args) => sync::run(args),
        PluginCommand::Aggregate(args) => aggregate::run(args),
    }
}

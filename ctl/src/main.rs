//! `multusctl`, the admin and plugin-author tool.

use clap::Parser;

fn main() {
    let cli = multusctl::cli::Cli::parse();
    std::process::exit(multusctl::cli::run(cli));
}

//! `multusctl`, the admin and plugin-author tool.

use clap::Parser;

fn main() {
    let cli = multus::ctl::Cli::parse();
    std::process::exit(multus::ctl::run(cli));
}

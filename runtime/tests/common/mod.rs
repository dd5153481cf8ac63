//! The testbed's nodes and pods, and this package's built binary.
#![allow(dead_code, unused_imports)]

pub use multus_testbed::node::*;

pub const MULTUS: &str = env!("CARGO_BIN_EXE_multus");

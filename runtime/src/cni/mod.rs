//! The CNI protocol: environment, errors, versions and results.

pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use env::{CniArgs, CniEnv, Command};
pub use error::{CniError, Code};

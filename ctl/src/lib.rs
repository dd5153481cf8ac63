//! `multusctl`: the admin and plugin-author tool. Everything that is not the
//! CNI hot path lives here (the node installer, the wasm compiler), so the
//! `multus` binary stays small and fast: it links the wasmtime runtime only.

pub mod cli;
pub mod compile;
pub mod doctor;
pub mod inspect;
pub mod install;
pub mod objects;
pub mod reconcile;
pub mod scaffold;
pub mod slices;

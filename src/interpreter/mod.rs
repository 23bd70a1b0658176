//! Phase 1, the interpreter: a cell's magics become job parameters.
//!
//! Two stages: `lines` splits the cell into lines and raw magics (pure, no
//! configuration), then `parse` validates them into [`params::JobParams`]
//! against the framework descriptors. One table, [`MAGICS`], drives parsing,
//! completion, inspection and `%help`.

pub mod params;
pub mod quantity;

mod apply;
mod complete;
mod habits;
mod help;
mod is_complete;
mod lines;
mod magics;
mod parse;
mod pyscan;
mod validate;

pub use complete::{Completion, complete, inspect};
pub use help::{help_bundle, help_markdown, magic_help};
pub use is_complete::{IsComplete, is_complete};
pub use magics::{Group, MAGICS, MagicSpec, ROLE, ValueKind, Values, find as find_magic};
pub use parse::{MagicError, parse};

#[cfg(test)]
mod robustness_tests;

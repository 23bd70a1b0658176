//! Phase 1, the interpreter: a cell's magics become job parameters.
//!
//! Two stages, as the magic table drives both: lines → raw magics (pure, no
//! configuration), then raw magics → [`params::JobParams`] validated against
//! the framework descriptors. The same table answers completion, inspection
//! and `%help`.

pub mod params;
pub mod quantity;

mod complete;
mod is_complete;
mod magics;
mod parse;

pub use complete::{Completion, complete, inspect};
pub use is_complete::{IsComplete, is_complete};
pub use magics::{MAGICS, MagicSpec, help_bundle};
pub use parse::{MagicError, parse};

//! The magic table: one row per magic drives parsing, completion, inspection
//! and `%help`. (Implementation pending.)

use crate::frameworks::Frameworks;
use crate::output::{MimeBundle, bundle};

/// One magic.
#[derive(Debug)]
pub struct MagicSpec {
    /// The name after `%`, e.g. `framework`.
    pub name: &'static str,
    /// How it is written, e.g. `%framework=NAME`.
    pub syntax: &'static str,
    /// What it does, one or two sentences.
    pub help: &'static str,
}

pub static MAGICS: &[MagicSpec] = &[];

/// The magics reference, as text and HTML.
pub fn help_bundle(frameworks: &Frameworks) -> MimeBundle {
    let _ = frameworks;
    bundle("", None)
}

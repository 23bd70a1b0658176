//! ciao: a Jupyter kernel for Kubeflow.
//!
//! A cell goes through three phases inside one process:
//! 1. [`interpreter`]: the magics become job parameters;
//! 2. [`image`]: the cell's code becomes an OCI layer appended to the
//!    framework's base image and pushed (no Docker, no external tool);
//! 3. [`backend`]: the Kubeflow job is submitted and every replica's log is
//!    streamed back.
//!
//! [`kernel`] speaks the Jupyter protocol; [`engine`] wires the phases.
#![forbid(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod config;
pub mod engine;
pub mod files;
pub mod frameworks;
pub mod image;
pub mod interpreter;
pub mod kernel;
pub mod output;
pub mod plan;
pub mod run;

/// ciao's version, as recorded in image provenance and kernel_info.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

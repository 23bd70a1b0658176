//! Phase 2, the image builder: the cell's code as an OCI layer appended to
//! the framework's base image, pushed to a target.

pub mod error;
pub mod layer;
pub mod manifest;
pub mod mutate;
pub mod reference;

pub use error::ImageError;

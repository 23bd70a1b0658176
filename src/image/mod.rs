//! Phase 2, the image builder: the cell's code as an OCI layer appended to
//! the framework's base image, published to a registry or an OCI layout.
//!
//! The data model follows go-containerregistry: a [`layer::Layer`] (digest =
//! compressed, diff_id = uncompressed) and an [`mutate::Image`] (manifest,
//! config, layers) made by a pure [`mutate::append`]. Writing is separate:
//! a [`target::Publisher`] per destination ([`registry`], [`layout`]), with
//! credentials from a [`auth::Keychain`]. [`builder::Builder`] ties them
//! together and keeps what a kernel session reuses between cells.
//!
//! Files: `layer.rs` (tar+gzip+sha256), `manifest.rs` (media types, index
//! resolution), `mutate.rs` (append, config edit), `reference.rs` (names,
//! mirrors, platforms), `auth.rs` (credentials, challenges, tokens),
//! `client.rs` (one registry session: HTTP, retries, auth), `failure.rs`
//! (classifying failed requests), `stream.rs` (verified, counted, chunked
//! blob streams), `base.rs`
//! (fetching and caching bases), `target.rs` (the publisher trait),
//! `registry.rs` and `layout.rs` (publishers), `extract.rs` (ciao's layers
//! back out of an image), `progress.rs` (events), `display.rs` (the
//! events as one display updated in place), `builder.rs` (the entry
//! point), `error.rs`.

pub mod auth;
pub mod base;
pub mod builder;
pub mod client;
pub mod display;
pub mod error;
pub mod extract;
pub mod failure;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod mutate;
pub mod progress;
pub mod reference;
pub mod stream;
pub mod registry;
pub mod target;

pub use builder::{BuildOptions, BuildResult, Builder};
pub use error::ImageError;
pub use extract::extract_added_layers;
pub use layer::{CodeBundle, Layer, LayerFile, LayerKind, code_bundle, sha256_digest};
pub use mutate::{Image, append};
pub use display::PushDisplay;
pub use progress::{Progress, ProgressFn};
pub use target::{Published, Publisher};

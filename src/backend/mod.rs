//! Phase 3, the backends: render the job, submit it, follow its replicas.

pub mod render;

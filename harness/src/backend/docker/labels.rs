//! The labels that mark what the project made in the machine's engine.

/// The label every image, container, volume and network of the project carries.
pub const LABEL: &str = "imds-harness";
/// The label naming the run that made a container (see [`crate::lifecycle::run_id`]).
pub const RUN_LABEL: &str = "imds-harness.run";

//! The async runtime each command runs its calls on: one thread, as a command-line tool
//! needs (the relay's serving runtime is its own, `relay_command`).

use anyhow::Context as _;

/// A current-thread Tokio runtime with I/O and time.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

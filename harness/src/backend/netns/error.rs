//! The netns backend's error.

use std::io;

use crate::lifecycle::{RunIdError, ShuttingDown};

/// An error of the netns backend.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Not running as root.
    #[error(
        "run as root (sudo imds-harness ...): the netns backend creates network \
         namespaces, bridges and iptables rules (effective uid is {euid})"
    )]
    NotRoot {
        /// The effective uid.
        euid: u32,
    },
    /// A program is missing.
    #[error(
        "`{program}` was not found in PATH; install iproute2 and iptables: \
         apt-get install iproute2 iptables"
    )]
    MissingTool {
        /// The program.
        program: String,
    },
    /// The program of a proxied layer is missing.
    #[error(
        "`{}` was not found in PATH; a proxied layer runs it: apt-get install {}",
        stack.program(),
        stack.package()
    )]
    MissingStack {
        /// The user-space stack.
        stack: crate::topology::UserStack,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, with its standard input if it had one.
        command: String,
        /// How it exited.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// An I/O error other than a failed command.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A site has made a mock for as many cells as it has addresses for.
    #[error(
        "no address left in the mock namespace for another cell's mock ({made} made); \
         measure fewer clients or tokens modes per topology"
    )]
    NoCellMockAddress {
        /// How many cell mocks the site made.
        made: u32,
    },
    /// The run is shutting down: nothing new is made.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
    /// This run has no id.
    #[error(transparent)]
    RunId(#[from] RunIdError),
}

pub(super) fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> NetnsError {
    let context = context.into();
    move |source| NetnsError::Io { context, source }
}

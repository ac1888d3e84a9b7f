//! A leaf namespace of the netns backend, running this machine's programs.

use std::process::Output;

use super::namespace::Namespace;
use crate::probe::env::ClientEnv;
use crate::probe::{Leaf, ProbeError, Program, Tools};

/// Where clients run on the netns backend (and on the docker backend's `host`).
#[derive(Clone, Debug)]
pub struct NamespaceLeaf {
    /// The namespace.
    pub namespace: Namespace,
    /// This machine's programs.
    pub tools: Tools,
}

impl Leaf for NamespaceLeaf {
    fn run(&self, program: Program, args: &[&str], env: &ClientEnv) -> Result<Output, ProbeError> {
        let path = self.tools.path(program)?;
        if let Some(warm) = &self.tools.warm {
            if let Some(output) = warm.run(program, path, &self.namespace.path(), args, env) {
                return output;
            }
        }
        env.apply(self.namespace.exec(path, args))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|source| ProbeError::Spawn {
                program: path.display().to_string(),
                place: self.place(),
                source,
            })
    }

    fn place(&self) -> String {
        format!("namespace {}", self.namespace.name())
    }
}

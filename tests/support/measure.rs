//! `imds-harness measure` as a CI job runs it.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `measure args --json ...` `n` times at once; each must exit 0. Their JSON
/// reports, written into `dir`.
pub fn at_once(n: usize, args: &[&str], dir: &Path) -> Vec<serde_json::Value> {
    let runs: Vec<_> = (0..n)
        .map(|i| {
            let json = dir.join(format!("run{i}.json"));
            let child = Command::new(crate::bins::harness())
                .arg("measure")
                .args(args)
                .arg("--json")
                .arg(&json)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, json)
        })
        .collect();
    runs.into_iter()
        .map(|(child, json)| {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
        })
        .collect()
}

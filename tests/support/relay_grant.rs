//! The first grant of a relay a test or benchmark has just started: `relay grant` asked
//! again until the relay's control socket answers.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a relay may take to start answering its control socket.
const START: Duration = Duration::from_secs(15);

/// The output of `shim relay grant --control <control> <extra>` (the grant's environment
/// lines), once the relay answers; panics when it has not started within 15 s.
pub fn first_grant(shim: &Path, control: &Path, extra: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let out = Command::new(shim)
            .args(["relay", "grant", "--control"])
            .arg(control)
            .args(extra)
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        assert!(started.elapsed() < START, "the relay did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

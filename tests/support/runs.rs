//! What the harness's runs made, told apart by run: the suite runs test binaries side by
//! side (`make test`), so a test compares only what its own runs made, never the whole
//! machine before and after.

use std::process::Command;

use imds_harness::backend::docker::{LABEL, RUN_LABEL};
use imds_harness::lifecycle::run_is_alive;

/// The run id of the harness process `pid`, once it has one: the name of the liveness
/// socket it holds.
pub fn run_of(pid: u32) -> Option<String> {
    let out = Command::new("ss").args(["-xlpH"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(&format!("pid={pid},")))
        .find_map(|line| {
            let at = line.find("@imdsh-run-")?;
            let rest = &line[at + "@imdsh-run-".len()..];
            Some(rest.split_whitespace().next()?.to_owned())
        })
}

/// The project's network namespaces (`imdsh-<run>-...`).
pub fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("imdsh-"))
        .map(str::to_string)
        .collect()
}

/// The namespaces of run `run`.
pub fn namespaces_of(run: &str) -> Vec<String> {
    let prefix = format!("imdsh-{run}-");
    namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The run a namespace name belongs to.
fn run_of_namespace(name: &str) -> Option<&str> {
    let run = name.strip_prefix("imdsh-")?.split('-').next()?;
    (run.len() == 6 && run.bytes().all(|b| b.is_ascii_hexdigit())).then_some(run)
}

/// Namespaces that were not in `before` and whose run has ended: what ended runs left
/// behind (another binary's live runs are not counted).
pub fn namespaces_left_since(before: &[String]) -> Vec<String> {
    namespaces()
        .into_iter()
        .filter(|n| !before.contains(n))
        .filter(|n| run_of_namespace(n).is_some_and(|run| !run_is_alive(run)))
        .collect()
}

/// The project's containers (name, run) made by other processes than this one (whose
/// other tests may be running instances right now).
pub fn project_containers() -> Vec<(String, String)> {
    let mine = imds_harness::lifecycle::run_id().unwrap();
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label={LABEL}")])
        .args([
            "--format",
            &format!("{{{{.Label \"{RUN_LABEL}\"}}}} {{{{.Names}}}}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(run, _)| *run != mine)
        .map(|(run, name)| (name.to_string(), run.to_string()))
        .collect()
}

/// The containers of run `run`.
pub fn containers_of(run: &str) -> Vec<String> {
    project_containers()
        .into_iter()
        .filter(|(_, r)| r == run)
        .map(|(name, _)| name)
        .collect()
}

/// Containers that were not in `before` and whose run has ended.
pub fn containers_left_since(before: &[(String, String)]) -> Vec<(String, String)> {
    project_containers()
        .into_iter()
        .filter(|c| !before.contains(c))
        .filter(|(_, run)| !run_is_alive(run))
        .collect()
}

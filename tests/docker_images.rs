//! `imds-harness images`: the docker backend's images, built from Debian packages with
//! no registry, labelled, working, and cached by recipe hash.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::require::{require, Need};
use imds_harness::backend::docker::images::{self, ImageKind};

const NEEDS: &[Need] = &[Need::Root, Need::Docker];

fn images_command() -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new(bins::harness())
        .arg("images")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "imds-harness images ({:.1} s):\n{stdout}{}",
        elapsed.as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "imds-harness images failed");
    (stdout, elapsed)
}

/// `docker run --rm --network none` of `image`, labelled; its stdout and stderr.
fn run_in(image: &str, command: &[&str]) -> String {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            "imds-harness=1",
        ])
        .arg(image)
        .args(command)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{command:?} in {image} failed: {text}"
    );
    text
}

fn label_of(tag: &str) -> String {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"imds-harness\"}}",
            tag,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tag} is not in the engine: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn images_are_built_labelled_working_and_then_cached() {
    if !require("docker_images", NEEDS) {
        return;
    }
    let (first, _) = images_command();
    let plan = images::plan(&bins::shim()).unwrap();
    let tag = |kind: ImageKind| {
        plan.iter()
            .find(|p| p.recipe.kind == kind)
            .map(|p| p.tag.clone())
            .unwrap()
    };
    for planned in &plan {
        assert!(first.contains(&planned.tag), "{} not reported", planned.tag);
        assert_eq!(label_of(&planned.tag), "1", "{} is unlabelled", planned.tag);
    }

    let probe = tag(ImageKind::Probe);
    let version = run_in(&probe, &["aws", "--version"]);
    assert!(version.contains("aws-cli/2.9.19"), "{version}");
    let help = run_in(&probe, &["imds-shim", "--help"]);
    assert!(!help.trim().is_empty());

    let instance = tag(ImageKind::Instance);
    let tools = run_in(
        &instance,
        &[
            "sh",
            "-c",
            "dockerd --version && iptables --version && ip -V && test -x /usr/lib/cni/bridge",
        ],
    );
    assert!(tools.contains("Docker version"), "{tools}");

    let (second, elapsed) = images_command();
    for planned in &plan {
        let line = second
            .lines()
            .find(|l| l.contains(&planned.tag))
            .unwrap_or_else(|| panic!("{} not reported: {second}", planned.tag));
        assert!(line.contains("cached"), "{line}");
    }
    assert!(second.contains("0 built, 3 cached"), "{second}");
    assert!(
        elapsed < Duration::from_secs(5),
        "a warm run took {elapsed:?}"
    );
}

//! `imds-harness images`: the docker backend's images, built from Debian packages with
//! no registry, labelled, working, cached by recipe hash, and pruned to a bounded cache.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use imds_e2e::bins;
use imds_e2e::docker::{docker, images_command};
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::docker::images::{self, Fate, ImageKind, ImageSet, PruneReport};
use imds_harness::backend::docker::{self as docker_backend, LABEL, RUN_LABEL};

const NEEDS: &[Requirement] = &[Requirement::Root, Requirement::Docker];

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
    let (first, _) = images_command(&[]);
    let plan = images::plan(&bins::shim(), &bins::harness()).unwrap();
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
    // Only the service models the clients use are in the probe image (each nested engine
    // loads its own copy): the CLI knows STS and EC2 and no longer SQS; boto3 likewise.
    let services = run_in(
        &probe,
        &[
            "python3",
            "-c",
            "import botocore.session; print(sorted(botocore.session.get_session().get_available_services()))",
        ],
    );
    assert_eq!(
        services.trim(),
        "['ec2', 'sso', 'sso-oidc', 'sts']",
        "boto3's services"
    );
    let cli = run_in(
        &probe,
        &[
            "sh",
            "-c",
            "export AWS_EC2_METADATA_DISABLED=true; aws sts get-caller-identity --generate-cli-skeleton >/dev/null \
             && aws ec2 modify-instance-metadata-options --generate-cli-skeleton >/dev/null \
             && aws sqs list-queues 2>&1 | grep -q 'Invalid choice' && echo models-ok",
        ],
    );
    assert!(cli.contains("models-ok"), "{cli}");

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

    let (second, elapsed) = images_command(&[]);
    for planned in &plan {
        let line = second
            .lines()
            .find(|l| l.contains(&planned.tag))
            .unwrap_or_else(|| panic!("{} not reported: {second}", planned.tag));
        assert!(line.contains("cached"), "{line}");
    }
    assert!(second.contains("0 built, 4 cached"), "{second}");
    assert!(
        elapsed < Duration::from_secs(5),
        "a warm run took {elapsed:?}"
    );
    // Every run reports the disk used; the current images are kept.
    for planned in &plan {
        let line = format!("{}  current  ", planned.tag);
        assert!(second.contains(&line), "{line} not reported: {second}");
    }
    assert!(second.contains("total kept: "), "{second}");

    // --prune builds nothing and keeps the current images.
    let (pruned, _) = images_command(&["--prune"]);
    assert!(
        !pruned.contains("cached") && !pruned.contains("built"),
        "{pruned}"
    );
    for planned in &plan {
        assert!(
            pruned.contains(&format!("{}  current  ", planned.tag)),
            "{pruned}"
        );
        assert_eq!(label_of(&planned.tag), "1");
    }
}

fn image_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Images of a kind of their own, `imds-harness/prune-test-<pid>`, imported from a tiny
/// tar, labelled like the project's when asked; everything made is removed on drop.
struct FakeImages {
    kind: String,
    tar: tempfile::TempDir,
    names: Vec<String>,
    container: Option<String>,
}

impl FakeImages {
    fn new() -> FakeImages {
        let tar = tempfile::tempdir().unwrap();
        std::fs::write(tar.path().join("hello"), b"a fake image\n").unwrap();
        make_tar(tar.path());
        FakeImages {
            kind: format!("prune-test-{}", std::process::id()),
            tar,
            names: Vec::new(),
            container: None,
        }
    }

    /// Imports the tar as `tag`; labelled `imds-harness=1` (and with the kind label
    /// every image of the project has) when `ours`. Returns the image id.
    fn import(&mut self, tag: &str, ours: bool, kind: &str) -> String {
        let mut args = vec!["import".to_string()];
        if ours {
            args.push(format!("--change=LABEL {LABEL}=1"));
            args.push(format!("--change=LABEL {LABEL}.image={kind}"));
        }
        args.push(self.tar.path().join("fake.tar").display().to_string());
        args.push(tag.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&args);
        self.names.push(tag.to_string());
        self.names.push(id.clone());
        id
    }

    /// A stopped container of `tag`, labelled as this process's run's.
    fn use_image(&mut self, tag: &str) {
        let name = format!("imdsh-{}", self.kind);
        let run = imds_harness::lifecycle::run_id().unwrap();
        docker(&[
            "create",
            "--name",
            &name,
            "--network",
            "none",
            "--label",
            &format!("{LABEL}=1"),
            "--label",
            &format!("{RUN_LABEL}={run}"),
            tag,
            "/hello",
        ]);
        self.container = Some(name);
    }

    fn stop_using(&mut self) {
        if let Some(name) = self.container.take() {
            docker(&["rm", "--force", &name]);
        }
    }
}

fn make_tar(dir: &Path) {
    let status = Command::new("tar")
        .args(["-cf", "fake.tar", "hello"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for FakeImages {
    fn drop(&mut self) {
        if let Some(name) = self.container.take() {
            let _ = Command::new("docker")
                .args(["rm", "--force", &name])
                .output();
        }
        for name in self.names.iter().rev() {
            let _ = Command::new("docker")
                .args(["rmi", "--force", name])
                .output();
        }
    }
}

fn fates(report: &PruneReport) -> BTreeMap<String, Fate> {
    report
        .images
        .iter()
        .map(|p| {
            (
                p.tag.clone().unwrap_or_else(|| p.id.clone()),
                p.fate.clone(),
            )
        })
        .collect()
}

/// The bounded cache, with the real engine, on a kind of the test's own: the current
/// tag is kept however old, then the two most recent others; an image in use is kept
/// (the engine refuses); a tag whose image has another tag is only untagged; untagged
/// images of ours go; unlabelled images and other kinds are never touched. Then the
/// tars: only those whose image is gone are removed.
#[test]
fn prune_keeps_current_recent_and_used_images_and_nothing_unlabelled_goes() {
    if !require("docker_images_prune", &[Requirement::Docker]) {
        return;
    }
    let mut fake = FakeImages::new();
    let kind = fake.kind.clone();
    let t = |name: &str| format!("imds-harness/{kind}:{name}");
    let unlabelled = fake.import(&t("unlabelled"), false, &kind);
    fake.import(&t("current"), true, &kind);
    let dangling = fake.import(&t("twice"), true, &kind);
    let twice = fake.import(&t("twice"), true, &kind);
    assert_ne!(dangling, twice, "a second import of a tag is a new image");
    for old in ["old0", "old1", "old2", "old3"] {
        fake.import(&t(old), true, &kind);
    }
    let other_kind = format!("{kind}-other");
    let other = format!("imds-harness/{other_kind}:old");
    fake.import(&other, true, &other_kind);
    // old0 also has a tag outside the project's repositories.
    let elsewhere = format!("imdsh-{kind}/elsewhere:kept");
    docker(&["tag", &t("old0"), &elsewhere]);
    fake.names.push(elsewhere.clone());
    fake.use_image(&t("old1"));
    let size: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &twice])
        .parse()
        .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = runtime.block_on(docker_backend::connect()).unwrap();
    let prune = |keep| {
        runtime
            .block_on(images::prune(
                &engine,
                &[kind.as_str()],
                &[t("current")],
                keep,
            ))
            .unwrap()
    };
    let report = prune(2);
    let expected: BTreeMap<String, Fate> = [
        (t("current"), Fate::Current),
        (t("old3"), Fate::Cached),
        (t("old2"), Fate::Cached),
        (t("old1"), Fate::InUse),
        (t("old0"), Fate::Untagged),
        (t("twice"), Fate::Removed),
        (dangling.clone(), Fate::Removed),
    ]
    .into_iter()
    .collect();
    assert_eq!(fates(&report), expected, "{report:#?}");
    assert_eq!(report.removed_bytes(), 2 * size);
    for kept in [&t("current"), &t("old3"), &t("old2"), &t("old1")] {
        assert!(image_exists(kept), "{kept} was removed");
    }
    for gone in [&t("old0"), &t("twice"), &twice, &dangling] {
        assert!(!image_exists(gone), "{gone} is still there");
    }
    assert!(image_exists(&elsewhere), "untagging removed the image");
    assert!(image_exists(&unlabelled), "an unlabelled image was removed");
    assert!(image_exists(&other), "another kind was pruned");

    // The tars follow the engine: a tar whose image is gone goes, and so does a partial
    // tar of a process that is gone; everything else stays.
    let tars = tempfile::tempdir().unwrap();
    let write = |name: &str| {
        let mut file = std::fs::File::create(tars.path().join(name)).unwrap();
        file.write_all(&[0; 1000]).unwrap();
    };
    let kept_tar = ImageSet::tar_name(&t("old3"));
    let gone_tar = ImageSet::tar_name(&t("old0"));
    let dead_partial = format!("{}.4194305.partial", gone_tar.trim_end_matches(".tar"));
    let live_partial = format!(
        "{}.{}.partial",
        gone_tar.trim_end_matches(".tar"),
        std::process::id()
    );
    for name in [
        &kept_tar,
        &gone_tar,
        &dead_partial,
        &live_partial,
        "notes.txt",
    ] {
        write(name);
    }
    let pruned_tars = runtime
        .block_on(images::prune_tars(&engine, tars.path()))
        .unwrap();
    let mut removed: Vec<&str> = pruned_tars
        .removed
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    removed.sort_unstable();
    let mut expected_removed = [gone_tar.as_str(), dead_partial.as_str()];
    expected_removed.sort_unstable();
    assert_eq!(removed, expected_removed);
    assert_eq!(pruned_tars.removed_bytes(), 2000);
    for name in [&kept_tar, &live_partial, "notes.txt"] {
        assert!(tars.path().join(name).exists(), "{name} was removed");
    }

    // Nothing in use any more, nothing cached: only the current tag stays.
    fake.stop_using();
    let report = prune(0);
    let expected: BTreeMap<String, Fate> = [
        (t("current"), Fate::Current),
        (t("old3"), Fate::Removed),
        (t("old2"), Fate::Removed),
        (t("old1"), Fate::Removed),
    ]
    .into_iter()
    .collect();
    assert_eq!(fates(&report), expected, "{report:#?}");
    assert!(image_exists(&t("current")));
    assert!(image_exists(&unlabelled) && image_exists(&other) && image_exists(&elsewhere));
}

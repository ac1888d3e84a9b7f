//! The Debian package (`make deb`, docs/packaging.md), made from the dev build the suite
//! builds anyway (`shim/debian/build dev`): what it holds, lintian on it, its units' hardening
//! and syntax, and, in a container of the simulated instance's image with systemd as PID 1,
//! what a build host does with it: install, `--version` and `man imds-shim-relay`, the relay
//! started by its unit serving a grant to a build one routing hop deep at hop limit 1 (the
//! mock's IMDS in the container's own network namespace, never the machine's), through a
//! restart of the unit, the enforce unit at boot (check, then apply), and a purge that
//! leaves nothing behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use imds_e2e::bins;
use imds_e2e::docker::{docker, images_command};
use imds_e2e::output::show;
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::docker::images::{plan, ImageKind};
use imds_harness::backend::endpoints::STS_URL;

/// Where the workspace is (the test's own manifest directory).
const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
/// The derived image: the instance image plus systemd, man-db, curl, procps and the AWS CLI.
const HOST_REPOSITORY: &str = "imdsh-package/host";
/// Bumped when [`HOST_DOCKERFILE`] changes.
const HOST_RECIPE: &str = "v3";
/// The instance image's engines, which this host does not need at boot.
const ENGINES: &str = "docker.service docker.socket containerd.service podman.service \
                       podman.socket podman-restart.service podman-auto-update.service \
                       podman-auto-update.timer";
/// The label of what these tests make in the engine.
const LABEL: &str = "imdsh-package=1";
/// The mock's Arn for the instance role, as the real CLI prints it.
const ROLE_ARN_PART: &str = ":assumed-role/";
/// The man pages every subcommand gets, a sample.
const PAGES: [&str; 5] = [
    "imds-shim.1.gz",
    "imds-shim-relay.1.gz",
    "imds-shim-relay-grant.1.gz",
    "imds-shim-enforce.1.gz",
    "imds-shim-probe.1.gz",
];
const UNITS: [&str; 3] = [
    "imds-shim-relay.service",
    "imds-shim-enforce.service",
    "imds-shim-fence.service",
];

/// The package made from the dev build, in a directory of its own removed with it: (its
/// path, the directory). `shim/debian/build` runs one at a time.
fn package() -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("imdsh-package-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .tempdir()
        .unwrap();
    let target = bins::target_profile_dir().parent().unwrap().to_path_buf();
    assert!(bins::shim().exists());
    let out = Command::new(Path::new(WORKSPACE).join("shim/debian/build"))
        .args(["dev", dir.path().to_str().unwrap()])
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shim/debian/build dev: {}",
        show(&out)
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    (debs[0].clone(), dir)
}

fn is_root() -> bool {
    stdout(&run("id", &["-u"])).trim() == "0"
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_holds_the_binary_pages_completions_units_and_conffile_and_lintian_passes() {
    if !require(
        "the_package_holds_the_binary_pages_completions_units_and_conffile_and_lintian_passes",
        &[Requirement::DebTools],
    ) {
        return;
    }
    let (deb, _dir) = package();
    let deb = deb.to_str().unwrap();
    let contents = stdout(&run("dpkg-deb", &["--contents", deb]));
    let mut wanted = vec![
        "./usr/bin/imds-shim".to_string(),
        "./etc/imds-shim/config.toml".into(),
        "./usr/share/imds-shim/hop-limits.toml".into(),
        "./usr/share/bash-completion/completions/imds-shim".into(),
        "./usr/share/zsh/vendor-completions/_imds-shim".into(),
        "./usr/share/fish/vendor_completions.d/imds-shim.fish".into(),
        "./usr/share/doc/imds-shim/copyright".into(),
    ];
    wanted.extend(PAGES.iter().map(|p| format!("./usr/share/man/man1/{p}")));
    wanted.extend(
        UNITS
            .iter()
            .map(|u| format!("./usr/lib/systemd/system/{u}")),
    );
    for path in &wanted {
        assert!(
            contents.lines().any(|l| l.ends_with(path.as_str())),
            "{path} is not in the package:\n{contents}"
        );
    }
    // The hidden `manual` command gets no page.
    assert!(!contents.contains("imds-shim-manual"), "{contents}");
    let conffiles = stdout(&run("dpkg-deb", &["--info", deb, "conffiles"]));
    assert_eq!(conffiles.trim(), "/etc/imds-shim/config.toml");
    // Removing stops each unit; purging forgets their enablement and the relay's state.
    let prerm = stdout(&run("dpkg-deb", &["--info", deb, "prerm"]));
    let postrm = stdout(&run("dpkg-deb", &["--info", deb, "postrm"]));
    for unit in UNITS {
        assert!(
            prerm.contains(&format!("deb-systemd-invoke stop {unit}")),
            "{prerm}"
        );
        assert!(
            postrm.contains(&format!("deb-systemd-helper purge {unit}")),
            "{postrm}"
        );
    }
    assert!(postrm.contains("rm -rf /var/lib/imds-shim"), "{postrm}");
    let info = stdout(&run("dpkg-deb", &["--info", deb]));
    let installed = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Installed-Size: "))
        .unwrap_or_else(|| panic!("{info}"));
    let size = std::fs::metadata(deb).unwrap().len();
    println!("package (dev build, stripped): {size} bytes, Installed-Size {installed} KiB");

    // No error or warning; the one tag overridden is explained in shim/debian/lintian-overrides
    // (--show-overrides would count it as a failure again).
    // As root, lintian warns that it runs as root, and that warning fails the run: run it as
    // nobody then.
    let mut lintian = Command::new("runuser");
    lintian.args(["-u", "nobody", "--", "env", "HOME=/tmp", "lintian"]);
    if !is_root() {
        lintian = Command::new("lintian");
    }
    let lintian = lintian
        .args(["--fail-on", "error,warning", "--display-info", deb])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    println!("lintian:\n{}", show(&lintian));
    assert!(lintian.status.success(), "lintian: {}", show(&lintian));
}

#[test]
fn each_units_exposure_is_ok_or_better() {
    if !require(
        "each_units_exposure_is_ok_or_better",
        &[Requirement::DebTools],
    ) {
        return;
    }
    let (deb, dir) = package();
    let root = dir.path().join("root");
    let out = run(
        "dpkg-deb",
        &["--extract", deb.to_str().unwrap(), root.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", show(&out));
    for unit in UNITS {
        let path = root.join("usr/lib/systemd/system").join(unit);
        // `systemd-analyze verify` needs the binary at /usr/bin/imds-shim and the units of a
        // booted system: the systemd test runs it where the package is installed.
        let security = run(
            "systemd-analyze",
            &["security", "--offline=true", path.to_str().unwrap()],
        );
        let text = stdout(&security);
        let level = text
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for "))
            .map_or_else(
                || panic!("{unit}: {}", show(&security)),
                |(_, rest)| rest.to_string(),
            );
        println!("{level}");
        let (_, verdict) = level.split_once(": ").unwrap();
        let mut words = verdict.split_whitespace();
        let score: f64 = words.next().unwrap().parse().unwrap();
        let word = words.next().unwrap();
        assert!(
            score <= 4.0 && ["OK", "SAFE"].contains(&word),
            "{unit}: exposure {verdict}, the goal is OK or better:\n{text}"
        );
    }
}

/// A container of the derived image, removed when dropped.
struct Host {
    name: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Host {
    /// Boots systemd as PID 1 in a container of `image`, with `deb_dir` at /imdsh-pkg and the
    /// mock (`imds-harness`) at /usr/local/bin/imds-harness. Its network namespace is its own
    /// (`--network none`): nothing in it routes off the machine.
    fn boot(image: &str, deb_dir: &Path) -> Host {
        let name = format!("imdsh-package-{}", std::process::id());
        let host = Host { name };
        docker(&[
            "run",
            "--detach",
            "--name",
            &host.name,
            "--label",
            LABEL,
            "--network",
            "none",
            "--cgroupns",
            "private",
            // What systemd as PID 1 takes as "halt": SIGTERM, Docker's default, it ignores,
            // and each `docker restart` waited out its whole time-out before the SIGKILL.
            "--stop-signal",
            "SIGRTMIN+3",
            // What the instance containers get (harness/src/backend/docker/settings.rs):
            // --privileged fails here ("unable to apply caps").
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--volume",
            &format!("{}:/imdsh-pkg:ro", deb_dir.display()),
            "--volume",
            &format!(
                "{}:/usr/local/bin/imds-harness:ro",
                bins::harness().display()
            ),
            image,
            // systemd tracks each unit in a cgroup of its own: the named hierarchy it uses
            // (cgroup v1 here) is the container's own subtree (private cgroup namespace),
            // made writable. Read-only, every process stays in the root cgroup, and processes
            // of `docker exec` were killed (SIGKILL) now and then.
            "sh",
            "-c",
            "mount -o remount,bind,rw /sys/fs/cgroup/systemd && exec /sbin/init",
        ]);
        host.wait_for_boot();
        host
    }

    fn wait_for_boot(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self.sh("systemctl is-system-running --wait");
            let state = stdout(&out).trim().to_string();
            if state == "running" || state == "degraded" {
                if state == "degraded" {
                    println!("{}", stdout(&self.sh("systemctl --failed --no-pager")));
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not boot: {state}: {}",
                show(&out)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A reboot: systemd halted (the container's stop signal), the container started
    /// again, systemd booting again.
    fn reboot(&self) {
        docker(&["restart", "--time", "20", &self.name]);
        self.wait_for_boot();
    }

    fn sh(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &self.name, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `script`'s standard output; panics when it fails.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script}: {}", show(&out));
        stdout(&out)
    }

    /// Writes `text` to `path` (mode 0644, owned by root).
    fn write(&self, path: &str, text: &str) {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c"])
            .arg(format!(
                "mkdir -p \"$(dirname {path})\" && cat > {path} && chmod 0644 {path}"
            ))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "writing {path}");
    }

    /// What the file system holds outside the package manager's own records, logs and
    /// caches, and the test's mock: compared before the install and after the purge.
    fn files(&self) -> BTreeSet<String> {
        self.ok(
            "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run \
             -o -path /var/lib/dpkg -o -path /var/log -o -path /var/cache \
             -o -path /var/lib/apt -o -path /tmp -o -path /etc/systemd/system/imdsh-mock.service \
             -o -path /var/lib/systemd/timers -o -path /var/lib/systemd/catalog \
             -o -path /etc/ld.so.cache \\) -prune -o -print",
        )
        .lines()
        // Each boot's private /tmp of other services (systemd-logind's).
        .filter(|p| !p.starts_with("/var/tmp/systemd-private-") || p.contains("imds-shim"))
        .map(str::to_owned)
        .collect()
    }

    /// The relay's main process id, from systemd.
    fn relay_pid(&self) -> u32 {
        self.ok("systemctl show --property MainPID --value imds-shim-relay")
            .trim()
            .parse()
            .unwrap()
    }

    /// The relay's resident set in KiB.
    fn relay_rss_kib(&self) -> u64 {
        let pid = self.relay_pid();
        let status = self.ok(&format!("cat /proc/{pid}/status"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{status}"))
    }
}

/// The Dockerfile of the derived image: the instance image (`imds-harness images`, Debian
/// bookworm by mmdebstrap) with what a host booting systemd and reading man pages has; man
/// pages are no longer excluded from installs (mmdebstrap's minbase setting); its container
/// engines are masked (nothing here needs them, and they would cost memory at every boot).
fn host_dockerfile(instance: &str) -> String {
    format!(
        "FROM {instance}\n\
         RUN rm -f /etc/dpkg/dpkg.cfg.d/99mmdebstrap \\\n\
          && apt-get update \\\n\
          && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\\n\
             systemd systemd-sysv dbus man-db curl procps awscli \\\n\
          && rm -rf /var/lib/apt/lists/* \\\n\
          && systemctl mask {ENGINES}\n\
         LABEL {LABEL}\n"
    )
}

fn image_present(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The derived image, built once (from the local instance image, nothing pulled) and kept
/// as a cache beside the harness's images; older tags of it are removed.
fn host_image() -> String {
    let planned = plan(&bins::shim(), &bins::harness()).unwrap();
    let instance = planned
        .iter()
        .find(|p| p.recipe.kind == ImageKind::Instance)
        .unwrap()
        .tag
        .clone();
    // Only the instance image is used: the others (the probe image changes with every
    // build of the shim) are made only when it is missing.
    if !image_present(&instance) {
        images_command(&[]);
    }
    let (_, instance_hash) = instance.rsplit_once(':').unwrap();
    let tag = format!("{HOST_REPOSITORY}:{instance_hash}-{HOST_RECIPE}");
    if !image_present(&tag) {
        let context = tempfile::Builder::new()
            .prefix("imdsh-package-image-")
            .tempdir()
            .unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            host_dockerfile(&instance),
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "--quiet", "--tag", &tag])
            .arg(context.path())
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "building {tag}: {}", show(&out));
    }
    let tags = docker(&[
        "images",
        HOST_REPOSITORY,
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    for old in tags.lines().filter(|t| *t != tag) {
        // In use by another run's container: the engine refuses, and it stays.
        let _ = Command::new("docker")
            .args(["rmi", old])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    tag
}

/// The mock's IMDS, STS and EC2 API at 169.254.169.254 on a link of the container's own
/// network namespace, started at boot before imds-shim's units; hop limit 1, tokens required.
const MOCK_UNIT: &str = "\
[Unit]
Description=the mock EC2 instance (test)
Before=imds-shim-enforce.service imds-shim-relay.service

[Service]
ExecStartPre=-/usr/sbin/ip link add imdsh-imds type bridge
ExecStartPre=/usr/sbin/ip link set imdsh-imds up
ExecStartPre=-/usr/sbin/ip addr add 169.254.169.254/32 dev imdsh-imds
ExecStart=/usr/local/bin/imds-harness mock --imds 169.254.169.254:80 --sts 169.254.169.254:8080 --ec2 169.254.169.254:8081 --hop-limit 1 --http-tokens required
Type=exec
ExecStartPost=/bin/sh -c 'until curl -s -o /dev/null --max-time 1 http://169.254.169.254/; do sleep 0.1; done'

[Install]
WantedBy=multi-user.target
";

/// A build one routing hop from the host: the namespace `imdsh-build` behind the router
/// namespace `imdsh-router`, which forwards (and so decrements the TTL).
const BUILD_NETWORK: &str = "\
set -e
ip netns add imdsh-router
ip netns add imdsh-build
ip link add imdsh-h0 type veth peer name imdsh-r0 netns imdsh-router
ip link add imdsh-r1 netns imdsh-router type veth peer name imdsh-b0 netns imdsh-build
ip addr add 10.77.0.1/30 dev imdsh-h0 && ip link set imdsh-h0 up
ip route add 10.77.1.0/30 via 10.77.0.2
ip -n imdsh-router addr add 10.77.0.2/30 dev imdsh-r0
ip -n imdsh-router addr add 10.77.1.1/30 dev imdsh-r1
ip -n imdsh-router link set imdsh-r0 up && ip -n imdsh-router link set imdsh-r1 up
ip -n imdsh-router link set lo up
ip -n imdsh-router route add default via 10.77.0.1
ip netns exec imdsh-router sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
ip -n imdsh-build addr add 10.77.1.2/30 dev imdsh-b0
ip -n imdsh-build link set imdsh-b0 up && ip -n imdsh-build link set lo up
ip -n imdsh-build route add default via 10.77.1.1
";

/// The configuration of the relay scenario: the enforce unit only reports.
const CONFIG: &str = "\
[enforce]
topology = \"earthly-run\"
apply = false

[relay]
state = \"/var/lib/imds-shim/grants.json\"
# 1,000 fetches of one grant in a few seconds, for the RSS figure.
rate = 1000
burst = 1000
";

/// The mock's EC2 API, for `imds-shim check` in the container.
const EC2_AT_MOCK: &str = "AWS_ENDPOINT_URL_EC2=http://169.254.169.254:8081/";

/// The enforce unit reaches the mock's EC2 API (the instance's own region and role, from
/// the mock's IMDS).
const ENFORCE_DROP_IN: &str = "\
[Service]
Environment=AWS_ENDPOINT_URL_EC2=http://169.254.169.254:8081/
";

/// `aws sts get-caller-identity` (Debian's CLI) in the build namespace with only `env`.
fn build_identity(host: &Host, env: &str) -> Output {
    host.sh(&format!(
        "ip netns exec imdsh-build env -i PATH=/usr/bin:/bin HOME=/tmp AWS_REGION=us-east-1 \
         AWS_METADATA_SERVICE_TIMEOUT=1 AWS_METADATA_SERVICE_NUM_ATTEMPTS=1 {env} \
         aws sts get-caller-identity --output text --query Arn --endpoint-url {STS_URL}"
    ))
}

#[test]
fn on_a_systemd_host_the_relay_serves_a_build_at_hop_limit_1_enforce_runs_at_boot_and_purge_leaves_nothing(
) {
    if !require(
        "on_a_systemd_host_the_relay_serves_a_build_at_hop_limit_1_enforce_runs_at_boot_and_purge_leaves_nothing",
        &[Requirement::Docker, Requirement::DebTools],
    ) {
        return;
    }
    let (deb, dir) = package();
    let deb_name = deb.file_name().unwrap().to_str().unwrap().to_owned();
    let image = host_image();
    let host = Host::boot(&image, dir.path());
    let before = host.files();

    // Install: the binary, its version, its manual.
    host.ok(&format!("dpkg -i /imdsh-pkg/{deb_name}"));
    let version = host.ok("imds-shim --version");
    assert_eq!(
        version.trim(),
        format!("imds-shim {}", env!("CARGO_PKG_VERSION"))
    );
    let man = host.ok("MANPAGER=cat MANWIDTH=100 man imds-shim-relay");
    assert!(
        man.contains("imds-shim-relay") && man.contains("--control-group"),
        "{man}"
    );
    // Installed, not enabled: nothing runs until the configuration is edited.
    for unit in UNITS {
        let state = stdout(&host.sh(&format!("systemctl is-enabled {unit}")));
        assert_eq!(state.trim(), "disabled", "{unit}");
    }
    for unit in UNITS {
        host.ok(&format!(
            "systemd-analyze verify /usr/lib/systemd/system/{unit}"
        ));
    }

    // The mock (hop limit 1), the configuration, a build one hop deep.
    host.write("/etc/systemd/system/imdsh-mock.service", MOCK_UNIT);
    host.write("/etc/imds-shim/config.toml", CONFIG);
    host.write(
        "/etc/systemd/system/imds-shim-enforce.service.d/imdsh-mock.conf",
        ENFORCE_DROP_IN,
    );
    host.ok("systemctl daemon-reload && systemctl start imdsh-mock imds-shim-relay");
    host.ok(BUILD_NETWORK);

    // The relay, started by its unit, keeps CAP_NET_ADMIN only.
    let pid = host.relay_pid();
    let status = host.ok(&format!("cat /proc/{pid}/status"));
    assert!(
        status.contains("CapBnd:\t0000000000001000") && status.contains("NoNewPrivs:\t1"),
        "{status}"
    );
    let rss_idle = host.relay_rss_kib();

    // Without a grant the build gets nothing at hop limit 1; with one, the role.
    let none = build_identity(&host, "");
    assert!(!none.status.success(), "{}", show(&none));
    host.ok(
        "imds-shim relay grant --instance-role --label 'build 1' --ttl 2h --output /root/build.env",
    );
    let grant_env = host.ok("cat /root/build.env").replace('\n', " ");
    let granted = build_identity(&host, &grant_env);
    assert!(
        granted.status.success() && stdout(&granted).contains(ROLE_ARN_PART),
        "{}",
        show(&granted)
    );

    // 1,000 fetches with the grant through one curl, then the RSS again.
    let fetched = host.ok(". /root/build.env && ip netns exec imdsh-build curl -s \
         -H \"Authorization: $AWS_CONTAINER_AUTHORIZATION_TOKEN\" \
         $(for i in $(seq 1000); do printf '%s ' \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\"; done) \
         | grep -o AccessKeyId | wc -l");
    assert_eq!(fetched.trim(), "1000");
    let rss_after = host.relay_rss_kib();
    println!("relay RSS started by its unit (dev build): idle {rss_idle} KiB, after 1,000 fetches {rss_after} KiB");

    // A restart of the unit keeps the grant.
    host.ok("systemctl restart imds-shim-relay");
    assert_ne!(host.relay_pid(), pid);
    let again = build_identity(&host, &grant_env);
    assert!(
        again.status.success() && stdout(&again).contains(ROLE_ARN_PART),
        "after the restart: {}",
        show(&again)
    );

    // At boot, enforce in check mode: the journal says what it would change, nothing changes.
    host.ok("systemctl enable imdsh-mock imds-shim-enforce");
    host.reboot();
    let journal = host.ok("journalctl --boot --no-pager -o cat -u imds-shim-enforce");
    assert!(
        journal.contains("HttpPutResponseHopLimit") && journal.contains("dry run: nothing changed"),
        "{journal}"
    );
    let still_1 = host.sh(&format!("{EC2_AT_MOCK} imds-shim check --need 1"));
    assert!(still_1.status.success(), "{}", show(&still_1));

    // At boot, enforce with apply: the hop limit is the topology's need, 3.
    host.write(
        "/etc/imds-shim/config.toml",
        &CONFIG.replace("apply = false", "apply = true"),
    );
    host.reboot();
    let journal = host.ok("journalctl --boot --no-pager -o cat -u imds-shim-enforce");
    assert!(
        journal.contains("ModifyInstanceMetadataOptions sent"),
        "{journal}"
    );
    let now_3 = host.sh(&format!(
        "{EC2_AT_MOCK} imds-shim check --topology earthly-run"
    ));
    assert!(now_3.status.success(), "{}", show(&now_3));

    // Purge: the units stopped and gone, the configuration and state too.
    host.ok("systemctl enable --now imds-shim-relay");
    host.ok("dpkg --purge imds-shim");
    assert!(!host.sh("pgrep -x imds-shim").status.success());
    assert!(!host.sh("ip link show imdsh-relay0").status.success());
    // What the test added itself.
    host.ok("systemctl disable --now imdsh-mock");
    host.ok("rm -rf /etc/systemd/system/imds-shim-enforce.service.d /root/build.env");
    let after = host.files();
    let left: Vec<&String> = after.difference(&before).collect();
    assert!(left.is_empty(), "the purge left: {left:?}");
    let gone: Vec<&String> = before.difference(&after).collect();
    assert!(gone.is_empty(), "the purge removed: {gone:?}");
}

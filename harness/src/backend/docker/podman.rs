//! Podman and Buildah inside a simulated instance: rootful on their default CNI network
//! `podman` (bridge `cni-podman0`), and rootless as an unprivileged user of the
//! instance, behind slirp4netns (Podman 4.3's rootless default) or pasta.
//!
//! The instance container has no systemd and cgroup v1, so `containers.conf` says
//! `cgroup_manager = "cgroupfs"` and `events_logger = "file"`. Container storage cannot
//! sit on the instance's overlayfs, so root's (`/var/lib/containers`, shared by Podman
//! and Buildah) and the user's (`~/.local/share/containers`) are tmpfs mounts. The probe
//! image comes from the mounted tar (`podman load`); nothing is ever pulled
//! (`--pull=never`, and no registry is configured or reachable).

use super::engine::sh_quote;
use super::images::ImageSet;
use super::instance::{DockerInstance, IMAGES_MOUNT};
use super::leaf::Launch;
use super::DockerError;

/// The unprivileged user rootless Podman runs as.
pub(crate) const ROOTLESS_USER: &str = "imdsh";
/// Its uid and gid.
pub(crate) const ROOTLESS_UID: u32 = 1000;
/// Its subordinate uids and gids (`/etc/subuid`, `/etc/subgid`): `start:count`.
const SUBORDINATE_IDS: &str = "100000:65536";

/// The instance's `/etc/containers/containers.conf`: no systemd and no journald in a
/// container, cgroup v1.
const CONTAINERS_CONF: &str = "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";

/// The instance's `/etc/containers/storage.conf`: the kernel's overlay, said outright
/// (with `fuse-overlayfs` installed, as Podman recommends, containers/storage picks it as
/// the mount program, and the instance has no /dev/fuse; the image leaves it out).
/// Rootless Podman takes the driver from here and its own paths.
const STORAGE_CONF: &str = "[storage]\ndriver = \"overlay\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\"\n";

/// The long-lived rootless container that pasta serves (see
/// [`DockerInstance::podman_rootless_pasta`]).
pub(crate) const PASTA_CONTAINER: &str = "pasta-run";

/// How Podman is run in the instance container: as root, or as [`ROOTLESS_USER`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Podman {
    /// The command up to `podman` (and including it).
    podman: Vec<String>,
}

impl Podman {
    /// Podman as root.
    fn rootful() -> Podman {
        Podman {
            podman: vec!["podman".into()],
        }
    }

    /// Podman as [`ROOTLESS_USER`], in a clean login-like environment.
    fn rootless() -> Podman {
        let home = format!("/home/{ROOTLESS_USER}");
        Podman {
            podman: [
                "runuser",
                "-u",
                ROOTLESS_USER,
                "--",
                "env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                &format!("HOME={home}"),
                &format!("USER={ROOTLESS_USER}"),
                &format!("XDG_RUNTIME_DIR=/run/user/{ROOTLESS_UID}"),
                "podman",
            ]
            .map(String::from)
            .into(),
        }
    }

    /// `podman <args>`.
    pub fn command<'a>(&self, args: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        self.program("podman", args)
    }

    /// `program <args>` as the same user, in the same environment.
    pub fn program<'a>(
        &self,
        program: &str,
        args: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let (_podman, user) = self.podman.split_last().expect("podman");
        user.iter()
            .cloned()
            .chain([program.to_string()])
            .chain(args.into_iter().map(String::from))
            .collect()
    }

    /// `podman run --rm` of `image` on Podman's default network, with `flags`.
    pub fn run(&self, image: &str, flags: &[&str]) -> Launch {
        let mut command = self.command(["run", "--rm", "--pull=never"]);
        command.extend(flags.iter().map(ToString::to_string));
        Launch::Command {
            command,
            target: image.to_string(),
        }
    }

    /// `podman load` of `tag`'s tar.
    fn load(&self, tag: &str) -> Vec<String> {
        let tar = format!("{IMAGES_MOUNT}/{}", ImageSet::tar_name(tag));
        self.command(["load", "--quiet", "--input", &tar])
    }
}

impl DockerInstance {
    /// What rootful and rootless Podman share: `containers.conf`.
    fn containers_conf(&self) -> Result<(), DockerError> {
        self.once("containers-conf", || {
            let script = format!(
                "mkdir -p /etc/containers && \
                 printf '%s' {conf} > /etc/containers/containers.conf && \
                 printf '%s' {storage} > /etc/containers/storage.conf",
                conf = sh_quote(CONTAINERS_CONF),
                storage = sh_quote(STORAGE_CONF),
            );
            self.exec_ok(vec!["sh".into(), "-c".into(), script])
                .map(drop)
        })
    }

    /// Rootful Podman (and Buildah, which shares its storage) with the probe image.
    pub fn podman(&self) -> Result<Podman, DockerError> {
        self.containers_conf()?;
        let podman = Podman::rootful();
        self.once("podman", || {
            self.exec_ok(
                [
                    "sh",
                    "-c",
                    "mkdir -p /var/lib/containers && \
                     (mountpoint -q /var/lib/containers || mount -t tmpfs tmpfs /var/lib/containers)",
                ]
                .map(String::from)
                .into(),
            )?;
            self.exec_ok(podman.load(&self.images().probe)).map(drop)
        })?;
        Ok(podman)
    }

    /// Rootless Podman as [`ROOTLESS_USER`] (made here, with subordinate ids and its
    /// storage on tmpfs), with the probe image.
    pub fn podman_rootless(&self) -> Result<Podman, DockerError> {
        self.containers_conf()?;
        let podman = Podman::rootless();
        self.once("podman-rootless", || {
            let (user, uid) = (ROOTLESS_USER, ROOTLESS_UID);
            let script = format!(
                "echo '{user}:x:{uid}:{uid}::/home/{user}:/bin/sh' >> /etc/passwd && \
                 echo '{user}:x:{uid}:' >> /etc/group && \
                 echo '{user}:{SUBORDINATE_IDS}' > /etc/subuid && \
                 echo '{user}:{SUBORDINATE_IDS}' > /etc/subgid && \
                 mkdir -p /home/{user}/.local/share/containers /run/user/{uid} && \
                 mount -t tmpfs -o uid={uid},gid={uid},mode=0700 tmpfs /home/{user}/.local/share/containers && \
                 chown -R {uid}:{uid} /home/{user} /run/user/{uid} && chmod 0700 /run/user/{uid} && \
                 mkdir -p /dev/net && (test -c /dev/net/tun || mknod -m 0666 /dev/net/tun c 10 200) && \
                 mount --make-rshared /"
            );
            self.exec_ok(vec!["sh".into(), "-c".into(), script])?;
            self.exec_ok(podman.load(&self.images().probe)).map(drop)
        })?;
        Ok(podman)
    }

    /// Rootless Podman's container behind pasta. Podman 4.3.1 (Debian bookworm's) has no
    /// `--network pasta` (it came with Podman 4.4: here "unable to find network with
    /// name or ID pasta"), so the harness does what Podman 4.4 and later do for it: the
    /// container gets a network namespace of its own with nothing in it (`--network
    /// none`), and pasta, run by the same user in the instance's namespace, joins the
    /// container's user and network namespaces (`pasta --config-net <pid>`), copies the
    /// instance's address and routes onto its TAP device and re-originates the
    /// container's connections from the instance. The client runs there with `podman
    /// exec`.
    pub fn podman_rootless_pasta(&self) -> Result<Launch, DockerError> {
        let podman = self.podman_rootless()?;
        self.once("podman-pasta", || {
            let mut run = podman.command([
                "run",
                "--detach",
                "--name",
                PASTA_CONTAINER,
                "--network",
                "none",
                "--pull=never",
            ]);
            run.extend([
                self.images().probe.clone(),
                "sleep".into(),
                "infinity".into(),
            ]);
            self.exec_ok(run)?;
            let pid = self.exec_ok(podman.command([
                "inspect",
                "--format",
                "{{.State.Pid}}",
                PASTA_CONTAINER,
            ]))?;
            // pasta forks to the background once the namespace is configured.
            let pasta = podman.program(
                "pasta",
                ["--config-net", "--ipv4-only", "--quiet", pid.trim()],
            );
            self.exec_ok(pasta).map(drop)
        })?;
        Ok(Launch::Command {
            command: podman.command(["exec"]),
            target: PASTA_CONTAINER.to_string(),
        })
    }
}

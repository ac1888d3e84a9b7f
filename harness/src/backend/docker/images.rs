//! Images without a registry: each image is a Debian bookworm root file system made by
//! `mmdebstrap` (packages included at bootstrap, so no container ever needs a network)
//! and imported into the engine through its API (`POST /images/create?fromSrc=-`).
//! Nothing is ever pulled.
//!
//! An image is tagged `imds-harness/<name>:<hash>`, where the hash covers its whole
//! recipe (suite, variant, packages, options, image config and, for the probe image,
//! the bytes of the `imds-shim` binary copied in). A tag that exists is up to date; a
//! changed recipe gives a new tag. Old tags stay as a cache until removed by hand.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions};
use bollard::{body_try_stream, Docker};
use futures_util::future::join_all;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::LABEL;

/// The Debian release every image is made from.
pub(crate) const SUITE: &str = "bookworm";
/// The mirror `mmdebstrap` downloads from (bookworm main; `awscli` is 2.9.19 there).
pub(crate) const MIRROR: &str = "http://deb.debian.org/debian";
/// Bumped when the way images are made changes in a way the recipe does not show.
const RECIPE_VERSION: u32 = 1;
/// Hex digits of the recipe hash in a tag.
const TAG_HASH_LEN: usize = 16;
/// Where the shim lands in the probe image.
pub(crate) const SHIM_IN_IMAGE: &str = "/usr/local/bin/imds-shim";

/// The images of the docker backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// Debian bookworm, `minbase`.
    Base,
    /// Base + Debian's `awscli` + `imds-shim`: what runs at a leaf.
    Probe,
    /// Base + Debian's `docker.io` (dockerd with BuildKit embedded), `iptables`,
    /// `iproute2` and the CNI plugins: a simulated EC2 instance, or a BuildKit container.
    Instance,
}

impl ImageKind {
    pub const ALL: [ImageKind; 3] = [ImageKind::Base, ImageKind::Probe, ImageKind::Instance];

    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Base => "base",
            ImageKind::Probe => "probe",
            ImageKind::Instance => "instance",
        }
    }

    /// The repository part of the tag.
    pub(crate) fn repository(self) -> String {
        format!("imds-harness/{}", self.name())
    }

    /// What goes into the image, as data.
    pub fn recipe(self) -> Recipe {
        match self {
            ImageKind::Base => Recipe {
                kind: self,
                packages: &[],
                shim: false,
            },
            ImageKind::Probe => Recipe {
                kind: self,
                packages: &["awscli", "ca-certificates"],
                shim: true,
            },
            ImageKind::Instance => Recipe {
                kind: self,
                packages: &[
                    "docker.io",
                    "iptables",
                    "iproute2",
                    "containernetworking-plugins",
                    "ca-certificates",
                ],
                shim: false,
            },
        }
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub kind: ImageKind,
    /// Debian packages installed at bootstrap, on top of `minbase`.
    pub packages: &'static [&'static str],
    /// Whether `imds-shim` is copied to [`SHIM_IN_IMAGE`].
    pub shim: bool,
}

/// Options of `mmdebstrap` that shape the content (paths excluded).
const MMDEBSTRAP_OPTIONS: &[&str] = &[
    "--variant=minbase",
    "--format=tar",
    "--aptopt=APT::Install-Recommends \"false\"",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
];

/// Image configuration applied at import (Dockerfile instructions), besides the labels.
const IMAGE_CHANGES: &[&str] = &[
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
];

impl Recipe {
    /// The canonical text the tag's hash is taken over. `shim_sha256` is the hex digest
    /// of the shim binary, for recipes that copy it in.
    pub fn describe(&self, shim_sha256: Option<&str>) -> String {
        let mut text = format!(
            "imds-harness image recipe v{RECIPE_VERSION}\nname={}\nsuite={SUITE}\nmirror={MIRROR}\n",
            self.kind.name()
        );
        for option in MMDEBSTRAP_OPTIONS {
            text.push_str(&format!("mmdebstrap-option={option}\n"));
        }
        text.push_str(&format!("packages={}\n", self.packages.join(",")));
        for change in IMAGE_CHANGES {
            text.push_str(&format!("change={change}\n"));
        }
        if self.shim {
            text.push_str(&format!(
                "shim={SHIM_IN_IMAGE} sha256={}\n",
                shim_sha256.unwrap_or("missing")
            ));
        }
        text
    }

    /// The recipe's content hash (hex SHA-256 of [`Recipe::describe`]).
    pub fn hash(&self, shim_sha256: Option<&str>) -> String {
        hex::encode(Sha256::digest(self.describe(shim_sha256).as_bytes()))
    }

    /// `mmdebstrap`'s arguments for writing this image's tar to `out`.
    fn mmdebstrap_args(&self, shim: Option<&Path>, out: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = MMDEBSTRAP_OPTIONS.iter().map(OsString::from).collect();
        args.push("--quiet".into());
        if !self.packages.is_empty() {
            args.push(format!("--include={}", self.packages.join(",")).into());
        }
        if let Some(shim) = shim {
            let mut hook = OsString::from("--customize-hook=copy-in '");
            hook.push(shim.as_os_str());
            hook.push("' /usr/local/bin");
            args.push(hook);
            args.push(format!("--customize-hook=chmod 0755 \"$1{SHIM_IN_IMAGE}\"").into());
        }
        args.push(SUITE.into());
        args.push(out.as_os_str().to_owned());
        args.push(MIRROR.into());
        args
    }

    /// The Dockerfile instructions applied at import.
    fn changes(&self, hash: &str) -> Vec<String> {
        let mut changes: Vec<String> = IMAGE_CHANGES.iter().map(|c| c.to_string()).collect();
        changes.push(format!("LABEL {LABEL}=1"));
        changes.push(format!("LABEL {LABEL}.image={}", self.kind.name()));
        changes.push(format!("LABEL {LABEL}.recipe={hash}"));
        changes
    }
}

/// An image with its inputs resolved: what `imds-harness images` builds or finds.
#[derive(Debug, Clone)]
pub struct Planned {
    pub recipe: Recipe,
    /// Full recipe hash.
    pub hash: String,
    /// `imds-harness/<name>:<hash prefix>`.
    pub tag: String,
    shim: Option<PathBuf>,
}

/// Resolves the recipes of all images: hashes the shim binary at `shim` (see
/// [`crate::probe::shim::locate`]) and computes every tag.
pub fn plan(shim: &Path) -> Result<Vec<Planned>, ImageError> {
    let bytes = std::fs::read(shim).map_err(|source| ImageError::Io {
        what: format!("reading the imds-shim binary {}", shim.display()),
        source,
    })?;
    let shim_sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(ImageKind::ALL
        .iter()
        .map(|kind| {
            let recipe = kind.recipe();
            let digest = recipe.shim.then_some(shim_sha256.as_str());
            let hash = recipe.hash(digest);
            let tag = format!("{}:{}", kind.repository(), &hash[..TAG_HASH_LEN]);
            Planned {
                shim: recipe.shim.then(|| shim.to_path_buf()),
                recipe,
                hash,
                tag,
            }
        })
        .collect())
}

/// Whether an image was made by this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Built,
    Cached,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Built => "built",
            Status::Cached => "cached",
        })
    }
}

/// One image, present in the engine.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: ImageKind,
    pub tag: String,
    pub id: String,
    pub status: Status,
    /// Size in the engine, bytes.
    pub size: u64,
    /// Time to bootstrap the root file system (zero when cached).
    pub bootstrap: Duration,
    /// Time to import it into the engine (zero when cached).
    pub import: Duration,
}

/// Errors of `imds-harness images`; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the Docker Engine is not reachable: start the Docker Engine \
         (e.g. `systemctl start docker` or `dockerd &`), or point DOCKER_HOST at its socket"
    )]
    DockerUnreachable {
        #[source]
        source: Box<DockerError>,
    },
    #[error("mmdebstrap is not installed: apt-get install mmdebstrap")]
    MmdebstrapMissing,
    #[error(
        "mmdebstrap failed to make the {image} image ({status}); it downloads from \
         {MIRROR}, which must be reachable. Its last output:\n{log_tail}"
    )]
    Mmdebstrap {
        image: ImageKind,
        status: String,
        log_tail: String,
    },
    #[error("the Docker Engine refused to import {tag} (check `docker info` and the disk space of /var/lib/docker)")]
    Import {
        tag: String,
        #[source]
        source: Box<DockerError>,
    },
    #[error("asking the Docker Engine about {what}")]
    Docker {
        what: String,
        #[source]
        source: Box<DockerError>,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted: the build was stopped and its temporary files removed; run `imds-harness images` again")]
    Interrupted,
}

/// Finds `mmdebstrap` on `PATH`.
pub(crate) fn find_mmdebstrap() -> Result<PathBuf, ImageError> {
    crate::which::on_path("mmdebstrap").ok_or(ImageError::MmdebstrapMissing)
}

/// The image behind `tag`, if the engine has it with the project's label.
async fn existing(docker: &Docker, tag: &str) -> Result<Option<(String, u64)>, ImageError> {
    match docker.inspect_image(tag).await {
        Ok(image) => {
            let labelled = image
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|labels| labels.get(LABEL).map(String::as_str) == Some("1"));
            if !labelled {
                return Ok(None);
            }
            let id = image.id.unwrap_or_default();
            let size = image.size.unwrap_or(0).max(0) as u64;
            Ok(Some((id, size)))
        }
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(ImageError::Docker {
            what: format!("image {tag}"),
            source: Box::new(source),
        }),
    }
}

/// Makes sure every planned image is in the engine: images whose tag exists are
/// `Cached` (unless `force`); the others are bootstrapped concurrently under `workdir`
/// and imported. `on_done` sees each image as it is ready. When `cancel` fires, running
/// `mmdebstrap`s are stopped (SIGINT to their process groups, so they clean up) and awaited before
/// this returns [`ImageError::Interrupted`].
pub async fn ensure(
    docker: &Docker,
    plan: &[Planned],
    force: bool,
    workdir: &Path,
    cancel: &CancellationToken,
    on_done: &(dyn Fn(&Outcome) + Sync),
) -> Result<Vec<Outcome>, ImageError> {
    let mut previous = Vec::with_capacity(plan.len());
    for planned in plan {
        previous.push(existing(docker, &planned.tag).await?);
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; plan.len()];
    let mut to_build = Vec::new();
    for (index, (planned, found)) in plan.iter().zip(&previous).enumerate() {
        match found {
            Some((id, size)) if !force => {
                let outcome = Outcome {
                    kind: planned.recipe.kind,
                    tag: planned.tag.clone(),
                    id: id.clone(),
                    status: Status::Cached,
                    size: *size,
                    bootstrap: Duration::ZERO,
                    import: Duration::ZERO,
                };
                on_done(&outcome);
                outcomes[index] = Some(outcome);
            }
            _ => to_build.push(index),
        }
    }
    if !to_build.is_empty() {
        let mmdebstrap = find_mmdebstrap()?;
        let builds = to_build.iter().map(|&index| {
            let planned = &plan[index];
            let mmdebstrap = &mmdebstrap;
            async move {
                let outcome = build(docker, mmdebstrap, planned, workdir, cancel).await;
                if let Err(err) = &outcome {
                    if !matches!(err, ImageError::Interrupted) {
                        // One failure stops the others: their work would be redone anyway.
                        cancel.cancel();
                    }
                } else if let Ok(outcome) = &outcome {
                    on_done(outcome);
                }
                (index, outcome)
            }
        });
        let results = join_all(builds).await;
        // Report the first real failure, not the interruptions it caused.
        let mut first_error = None;
        for (index, result) in results {
            match result {
                Ok(outcome) => outcomes[index] = Some(outcome),
                Err(err) => match (&first_error, &err) {
                    (None, _) | (Some(ImageError::Interrupted), _) => first_error = Some(err),
                    _ => {}
                },
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
    }
    // A forced rebuild leaves the old image untagged: remove it if nothing uses it.
    for ((found, outcome), _) in previous.iter().zip(&outcomes).zip(plan) {
        if let (Some((old_id, _)), Some(outcome)) = (found, outcome) {
            if outcome.status == Status::Built && *old_id != outcome.id {
                let _ = docker
                    .remove_image(old_id, None::<RemoveImageOptions>, None)
                    .await;
            }
        }
    }
    Ok(outcomes.into_iter().flatten().collect())
}

async fn build(
    docker: &Docker,
    mmdebstrap: &Path,
    planned: &Planned,
    workdir: &Path,
    cancel: &CancellationToken,
) -> Result<Outcome, ImageError> {
    let kind = planned.recipe.kind;
    let tar = workdir.join(format!("{}.tar", kind.name()));
    let log = workdir.join(format!("{}.mmdebstrap.log", kind.name()));
    let started = Instant::now();
    bootstrap(mmdebstrap, planned, &tar, &log, workdir, cancel).await?;
    let bootstrap_time = started.elapsed();

    let started = Instant::now();
    let (repository, tag) = planned
        .tag
        .split_once(':')
        .expect("a tag is repository:hash");
    let options = CreateImageOptions {
        from_src: Some("-".to_string()),
        repo: Some(repository.to_string()),
        tag: Some(tag.to_string()),
        message: Some(format!("imds-harness images: {}", kind.name())),
        changes: planned.recipe.changes(&planned.hash),
        ..Default::default()
    };
    let file = tokio::fs::File::open(&tar)
        .await
        .map_err(|source| ImageError::Io {
            what: format!("opening {}", tar.display()),
            source,
        })?;
    let body = body_try_stream(ReaderStream::with_capacity(file, 1 << 20));
    let import_error = |source| ImageError::Import {
        tag: planned.tag.clone(),
        source: Box::new(source),
    };
    let import = docker
        .create_image(Some(options), Some(body), None)
        .try_for_each(|_| async { Ok(()) });
    tokio::select! {
        result = import => result.map_err(import_error)?,
        () = cancel.cancelled() => return Err(ImageError::Interrupted),
    }
    let import_time = started.elapsed();
    let _ = tokio::fs::remove_file(&tar).await;

    let (id, size) = existing(docker, &planned.tag)
        .await?
        .ok_or_else(|| ImageError::Docker {
            what: format!("image {} right after importing it", planned.tag),
            source: Box::new(DockerError::DockerResponseServerError {
                status_code: 404,
                message: "the imported image is missing or unlabelled".into(),
            }),
        })?;
    Ok(Outcome {
        kind,
        tag: planned.tag.clone(),
        id,
        status: Status::Built,
        size,
        bootstrap: bootstrap_time,
        import: import_time,
    })
}

/// Runs `mmdebstrap` for one image, its output in `log`, its own temporary files
/// under `workdir`.
async fn bootstrap(
    mmdebstrap: &Path,
    planned: &Planned,
    tar: &Path,
    log: &Path,
    workdir: &Path,
    cancel: &CancellationToken,
) -> Result<(), ImageError> {
    let kind = planned.recipe.kind;
    let io = |what: String| move |source| ImageError::Io { what, source };
    let log_file = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let log_err = log_file
        .try_clone()
        .map_err(io(format!("opening {}", log.display())))?;
    let mut child = tokio::process::Command::new(mmdebstrap)
        .args(planned.recipe.mmdebstrap_args(planned.shim.as_deref(), tar))
        .env("TMPDIR", workdir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        // Its own process group: a Ctrl-C reaches the harness only, which sends the
        // group SIGINT and waits, so mmdebstrap unmounts what it mounted.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(io(format!("starting {}", mmdebstrap.display())))?;
    let status = tokio::select! {
        status = child.wait() => status.map_err(io("waiting for mmdebstrap".into()))?,
        () = cancel.cancelled() => {
            // mmdebstrap forks; its whole group gets what a terminal's Ctrl-C would send.
            let group = child.id().map(|pid| nix::unistd::Pid::from_raw(-(pid as i32)));
            let signal_group = |signal| {
                if let Some(group) = group {
                    let _ = nix::sys::signal::kill(group, signal);
                }
            };
            signal_group(nix::sys::signal::Signal::SIGINT);
            if tokio::time::timeout(Duration::from_secs(30), child.wait()).await.is_err() {
                signal_group(nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait().await;
            }
            // Give the group's other processes a moment to finish their cleanup.
            for _ in 0..50 {
                let alive = group.is_some_and(|g| nix::sys::signal::kill(g, None).is_ok());
                if !alive {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(ImageError::Interrupted);
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let log_tail = lines[lines.len().saturating_sub(20)..].join("\n");
    Err(ImageError::Mmdebstrap {
        image: kind,
        status: status.to_string(),
        log_tail,
    })
}

/// A temporary directory for the tars, removed when dropped — unless something is
/// still mounted under it (a killed `mmdebstrap`'s chroot), in which case it is kept
/// and named, since removing it would reach into the mounts.
pub struct Workdir {
    dir: Option<tempfile::TempDir>,
}

impl Workdir {
    pub fn new() -> Result<Workdir, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix("imds-harness-images-")
            .tempdir()
            .map_err(|source| ImageError::Io {
                what: "creating a temporary directory".into(),
                source,
            })?;
        Ok(Workdir { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until dropped").path()
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|mount_point| {
            mount_point == &prefix || mount_point.starts_with(&format!("{prefix}/"))
        })
        .map(str::to_string)
        .collect()
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let mounts = mounts_under(dir.path());
        if mounts.is_empty() {
            if let Err(err) = dir.close() {
                tracing::warn!("could not remove the temporary directory: {err}");
            }
        } else {
            let path = dir.keep();
            tracing::warn!(
                "kept {} because something is still mounted under it ({}); unmount and remove it by hand",
                path.display(),
                mounts.join(", ")
            );
        }
    }
}

/// Where the image tars that nested engines load are kept: one per tag, exported once.
pub(crate) const TARS_DIR: &str = "/var/cache/imds-harness/image-tars";

/// The images a simulated instance runs, present in the machine's engine and exported
/// as tars for the engines inside it (which have no registry either).
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// The probe image's tag.
    pub probe: String,
    /// The instance image's tag.
    pub instance: String,
    /// The folder holding their tars, named by [`ImageSet::tar_name`].
    pub tars: PathBuf,
}

impl ImageSet {
    /// The tar of `tag` in [`ImageSet::tars`].
    pub(crate) fn tar_name(tag: &str) -> String {
        format!("{}.tar", tag.replace(['/', ':'], "_"))
    }

    /// Builds what is missing (see [`ensure`]) and exports the tars that are not there
    /// yet into `tars`; older tars there are removed. `on_image` sees each image.
    pub async fn prepare(
        docker: &Docker,
        shim: &Path,
        tars: &Path,
        on_image: &(dyn Fn(&Outcome) + Sync),
    ) -> Result<ImageSet, ImageError> {
        // One preparation at a time in a process: concurrent ones would build and
        // export the same images twice.
        static PREPARING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = PREPARING.lock().await;
        let plan = plan(shim)?;
        let workdir = Workdir::new()?;
        let cancel = CancellationToken::new();
        let outcomes = ensure(docker, &plan, false, workdir.path(), &cancel, on_image).await?;
        let tag = |kind| {
            outcomes
                .iter()
                .find(|o| o.kind == kind)
                .map(|o| o.tag.clone())
                .expect("ensure returns every planned image")
        };
        let set = ImageSet {
            probe: tag(ImageKind::Probe),
            instance: tag(ImageKind::Instance),
            tars: tars.to_path_buf(),
        };
        let io = |what: String| move |source| ImageError::Io { what, source };
        tokio::fs::create_dir_all(tars)
            .await
            .map_err(io(format!("creating {}", tars.display())))?;
        let wanted = [Self::tar_name(&set.probe), Self::tar_name(&set.instance)];
        for tag in [&set.probe, &set.instance] {
            let path = tars.join(Self::tar_name(tag));
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                continue;
            }
            let partial = path.with_extension(format!("{}.partial", std::process::id()));
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(io(format!("creating {}", partial.display())))?;
            let mut stream = docker.export_image(tag);
            while let Some(chunk) =
                stream
                    .try_next()
                    .await
                    .map_err(|source| ImageError::Docker {
                        what: format!("exporting {tag}"),
                        source: Box::new(source),
                    })?
            {
                tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                    .await
                    .map_err(io(format!("writing {}", partial.display())))?;
            }
            tokio::io::AsyncWriteExt::flush(&mut file)
                .await
                .map_err(io(format!("writing {}", partial.display())))?;
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(io(format!("renaming {}", partial.display())))?;
        }
        if let Ok(entries) = std::fs::read_dir(tars) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let old_tar = name.starts_with("imds-harness_") && name.ends_with(".tar");
                if old_tar && !wanted.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_distinct() {
        let base = ImageKind::Base.recipe();
        assert_eq!(base.hash(None), base.hash(None));
        let probe = ImageKind::Probe.recipe();
        assert_ne!(probe.hash(Some("aa")), probe.hash(Some("bb")));
        assert_ne!(base.hash(None), ImageKind::Instance.recipe().hash(None));
    }

    #[test]
    fn probe_recipe_copies_the_shim() {
        let args = ImageKind::Probe
            .recipe()
            .mmdebstrap_args(Some(Path::new("/x/imds-shim")), Path::new("/t/p.tar"));
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert!(args.contains(&"--include=awscli,ca-certificates".to_string()));
        assert!(
            args.contains(&"--customize-hook=copy-in '/x/imds-shim' /usr/local/bin".to_string())
        );
        assert_eq!(&args[args.len() - 3..], [SUITE, "/t/p.tar", MIRROR]);
    }

    #[test]
    fn labels_are_applied_at_import() {
        let changes = ImageKind::Base.recipe().changes("abc");
        assert!(changes.contains(&"LABEL imds-harness=1".to_string()));
    }
}

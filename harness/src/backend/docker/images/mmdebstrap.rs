//! Root file systems made by `mmdebstrap`: one tar per image, in a temporary directory
//! that is never removed while something is still mounted under it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::ImageError;
use super::plan::Planned;
use super::recipe::{Recipe, MIRROR, MMDEBSTRAP_OPTIONS, SHIM_IN_IMAGE, SUITE};
use crate::probe::programs::SdkProgram;

/// Finds `mmdebstrap` on `PATH`.
pub(super) fn find_mmdebstrap() -> Result<PathBuf, ImageError> {
    crate::which::on_path("mmdebstrap").ok_or(ImageError::MmdebstrapMissing)
}

/// `mmdebstrap`'s arguments for writing `recipe`'s tar to `out`, the shim copied in from
/// `shim`.
fn mmdebstrap_args(
    recipe: &Recipe,
    shim: Option<&Path>,
    programs: &[(SdkProgram, PathBuf)],
    out: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = MMDEBSTRAP_OPTIONS.iter().map(OsString::from).collect();
    args.push("--quiet".into());
    args.extend(
        recipe
            .dpkg_filters
            .iter()
            .map(|filter| OsString::from(format!("--dpkgopt={filter}"))),
    );
    if !recipe.packages.is_empty() {
        args.push(format!("--include={}", recipe.packages.join(",")).into());
    }
    // Each copied file keeps its name and lands in /usr/local/bin, executable.
    let mut copy_in = |path: &Path, in_image: &str| {
        let mut hook = OsString::from("--customize-hook=copy-in '");
        hook.push(path.as_os_str());
        hook.push("' /usr/local/bin");
        args.push(hook);
        args.push(format!("--customize-hook=chmod 0755 \"$1{in_image}\"").into());
    };
    if let Some(shim) = shim {
        copy_in(shim, SHIM_IN_IMAGE);
    }
    for (program, path) in programs {
        copy_in(path, &program.in_image());
    }
    args.push(SUITE.into());
    args.push(out.as_os_str().to_owned());
    args.push(MIRROR.into());
    args
}

/// Runs `mmdebstrap` for one image, its output in `log`, its own temporary files
/// under `workdir`.
pub(super) async fn bootstrap(
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
        .args(mmdebstrap_args(
            &planned.recipe,
            planned.shim.as_deref(),
            &planned.programs,
            tar,
        ))
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
            let group = child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .map(|pid| nix::unistd::Pid::from_raw(-pid));
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
    /// A fresh `imds-harness-images-...` directory in the system's temporary directory
    /// (`$TMPDIR`, or /tmp).
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

    /// Where the directory is.
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

#[cfg(test)]
mod tests {
    use super::super::ImageKind;
    use super::*;

    #[test]
    fn probe_recipe_copies_the_shim() {
        let args = mmdebstrap_args(
            &ImageKind::Probe.recipe(),
            Some(Path::new("/x/imds-shim")),
            &[(SdkProgram::Ruby, PathBuf::from("/c/imdsh-ruby"))],
            Path::new("/t/p.tar"),
        );
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert!(args.contains(
            &"--include=awscli,ca-certificates,ruby-aws-sdk-core,python3-boto3".to_string()
        ));
        assert!(
            args.contains(&"--customize-hook=copy-in '/c/imdsh-ruby' /usr/local/bin".to_string())
        );
        assert!(args
            .contains(&"--customize-hook=chmod 0755 \"$1/usr/local/bin/imdsh-ruby\"".to_string()));
        assert!(
            args.contains(&"--customize-hook=copy-in '/x/imds-shim' /usr/local/bin".to_string())
        );
        assert_eq!(&args[args.len() - 3..], [SUITE, "/t/p.tar", MIRROR]);
    }

    #[test]
    fn the_probe_recipe_keeps_only_its_clients_models_each_include_after_its_exclude() {
        let filters = |kind: ImageKind| -> Vec<String> {
            mmdebstrap_args(&kind.recipe(), None, &[], Path::new("/t/x.tar"))
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .filter(|a| a.starts_with("--dpkgopt=path-include=") || a.contains("/data/*/*"))
                .collect()
        };
        assert_eq!(filters(ImageKind::Base), Vec::<String>::new());
        assert_eq!(filters(ImageKind::Instance), Vec::<String>::new());
        let instance = mmdebstrap_args(
            &ImageKind::Instance.recipe(),
            None,
            &[],
            Path::new("/t/x.tar"),
        );
        assert!(instance.contains(&"--dpkgopt=path-exclude=/usr/bin/dnet".into()));
        let probe = filters(ImageKind::Probe);
        // dpkg applies the last matching filter: each tree's exclude comes first.
        for tree in ["botocore", "awscli/botocore"] {
            let data = format!("/usr/lib/python3/dist-packages/{tree}/data/");
            let exclude = probe
                .iter()
                .position(|a| *a == format!("--dpkgopt=path-exclude={data}*/*"))
                .unwrap_or_else(|| panic!("{tree}: {probe:?}"));
            for service in ["sts", "ec2"] {
                let include = probe
                    .iter()
                    .position(|a| *a == format!("--dpkgopt=path-include={data}{service}/*"))
                    .unwrap_or_else(|| panic!("{tree} {service}: {probe:?}"));
                assert!(exclude < include, "{tree} {service}");
            }
        }
    }
}

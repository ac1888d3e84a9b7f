//! The `go`, `go-v1`, `ruby` and `boto3` clients' programs (`harness/clients/`), made
//! ready once per content and kept in [`CACHE_DIR`]: the Go programs built offline with
//! Debian's Go and the SDK sources Debian installs under `/usr/share/gocode` (GOPATH
//! mode, `GOPROXY=off`: nothing is ever downloaded), the Ruby and Python scripts written
//! out as they are (their `#!` names Debian's interpreter). The same files go into the
//! docker backend's probe image, at [`SdkProgram::in_image`].

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use strum::{Display, IntoStaticStr, VariantArray};

use super::outcome::{stderr_tail, ProbeError};
use crate::lifecycle::lock_file;

/// Where the programs are kept, one folder per program and content hash.
pub const CACHE_DIR: &str = "/var/cache/imds-harness/clients";
/// Where Debian's Go library packages install their sources (a GOPATH).
const GOCODE: &str = "/usr/share/gocode";
/// Bumped when the way programs are made changes in a way the hash does not show.
const BUILD_VERSION: u32 = 1;
/// Hex digits of the content hash in a folder's name.
const HASH_LEN: usize = 16;

/// A client that is a program of ours on top of an SDK.
///
/// Its file name (and `Display`) is `imdsh-` and the variant in kebab case.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, VariantArray, IntoStaticStr, Display,
)]
#[strum(serialize_all = "kebab-case", prefix = "imdsh-")]
pub enum SdkProgram {
    /// aws-sdk-go-v2 (`config.LoadDefaultConfig`), as the Earthly CLI uses it.
    Go,
    /// aws-sdk-go v1 (`session.NewSession`).
    GoV1,
    /// aws-sdk-core for Ruby (`Aws::STS::Client`).
    Ruby,
    /// boto3 (`boto3.client("sts")`).
    Boto3,
}

/// How a program is made from its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Make {
    /// `go build` in GOPATH mode.
    Go,
    /// Written out as it is, executable.
    Script,
}

impl SdkProgram {
    /// The program's file name, on the host and in the probe image.
    pub fn file_name(self) -> &'static str {
        self.into()
    }

    /// Where the program is in the probe image.
    pub fn in_image(self) -> String {
        format!("/usr/local/bin/{}", self.file_name())
    }

    /// Its source, as kept in `harness/clients/`.
    pub fn source(self) -> &'static str {
        match self {
            SdkProgram::Go => include_str!("../../clients/go/main.go"),
            SdkProgram::GoV1 => include_str!("../../clients/go-v1/main.go"),
            SdkProgram::Ruby => include_str!("../../clients/imdsh-ruby.rb"),
            SdkProgram::Boto3 => include_str!("../../clients/imdsh-boto3.py"),
        }
    }

    fn make(self) -> Make {
        match self {
            SdkProgram::Go | SdkProgram::GoV1 => Make::Go,
            SdkProgram::Ruby | SdkProgram::Boto3 => Make::Script,
        }
    }

    /// The Debian packages it needs, to build on the host and to run (in the probe
    /// image the Go programs need none: they are static).
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            SdkProgram::Go => &["golang-go", "golang-github-aws-aws-sdk-go-v2-dev"],
            SdkProgram::GoV1 => &["golang-go", "golang-github-aws-aws-sdk-go-dev"],
            SdkProgram::Ruby => &["ruby-aws-sdk-core"],
            SdkProgram::Boto3 => &["python3-boto3"],
        }
    }

    /// The Debian packages the probe image needs for it.
    pub fn image_packages(self) -> &'static [&'static str] {
        match self.make() {
            Make::Go => &[],
            Make::Script => self.packages(),
        }
    }

    /// Whether its Debian packages are installed (it can then be made ready).
    pub fn is_installed(self) -> bool {
        installed_versions(self.packages()).is_ok()
    }

    /// The program ready to run on this machine: from the cache, or made now (a Go
    /// program: ~10 to 40 s, once). A missing package is an error naming the install.
    pub fn prepare(self) -> Result<PathBuf, ProbeError> {
        self.prepare_in(Path::new(CACHE_DIR))
    }

    fn prepare_in(self, cache: &Path) -> Result<PathBuf, ProbeError> {
        let versions = installed_versions(self.packages()).map_err(|missing| {
            ProbeError::MissingBinary(
                self.description(),
                format!(
                    "Debian's {} not installed: apt-get install {} (make test installs them)",
                    missing.join(", "),
                    self.packages().join(" ")
                ),
            )
        })?;
        let hash = self.hash(&versions);
        let dir = cache.join(format!("{}-{}", self.file_name(), &hash[..HASH_LEN]));
        let path = dir.join(self.file_name());
        if path.is_file() {
            return Ok(path);
        }
        let failed = |what: String| {
            move |source: std::io::Error| ProbeError::Prepare {
                program: self.file_name(),
                what,
                source: Box::new(source),
            }
        };
        std::fs::create_dir_all(cache).map_err(failed(format!("creating {}", cache.display())))?;
        // One maker at a time: a concurrent run (the images beside the tests, say) waits
        // for the one making it and finds it made, instead of making it too. The lock goes
        // with the file (flock(2)), so a killed maker holds nothing.
        let lock_path = cache.join(format!(".{}.lock", self.file_name()));
        let _lock =
            lock_file(&lock_path).map_err(failed(format!("locking {}", lock_path.display())))?;
        if path.is_file() {
            return Ok(path);
        }
        // Made in a folder of its own, then renamed into place: a run that does not take
        // the lock (an older imds-harness) either finds the whole folder or makes its own.
        let work = tempfile::Builder::new()
            .prefix(&format!(".{}-", self.file_name()))
            .tempdir_in(cache)
            .map_err(failed(format!("a folder in {}", cache.display())))?;
        let made = work.path().join("out");
        std::fs::create_dir(&made).map_err(failed("a folder".into()))?;
        let target = made.join(self.file_name());
        match self.make() {
            Make::Script => {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::write(&target, self.source())
                    .map_err(failed(format!("writing {}", target.display())))?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                    .map_err(failed(format!("chmod {}", target.display())))?;
            }
            Make::Go => self.go_build(work.path(), cache, &target)?,
        }
        match std::fs::rename(&made, &dir) {
            Ok(()) => Ok(path),
            // Another run put it there first.
            Err(_) if path.is_file() => Ok(path),
            Err(source) => Err(failed(format!("moving it to {}", dir.display()))(source)),
        }
    }

    /// `go build` of the program in GOPATH mode, offline, static (no cgo).
    fn go_build(self, work: &Path, cache: &Path, target: &Path) -> Result<(), ProbeError> {
        let package = format!("imdsh/{}", self.file_name());
        let src = work.join("src").join(&package);
        let failed = |what: String| {
            move |source: std::io::Error| ProbeError::Prepare {
                program: self.file_name(),
                what,
                source: Box::new(source),
            }
        };
        std::fs::create_dir_all(&src).map_err(failed(format!("creating {}", src.display())))?;
        std::fs::write(src.join("main.go"), self.source())
            .map_err(failed("writing main.go".into()))?;
        let gopath = std::env::join_paths([work, Path::new(GOCODE)])
            .map_err(|e| failed("GOPATH".into())(std::io::Error::other(e)))?;
        let output = Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(target)
            .arg(&package)
            .current_dir(work)
            .env("GOPATH", gopath)
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", cache.join("gocache"))
            .output()
            .map_err(failed(
                "running `go build` (apt-get install golang-go)".into(),
            ))?;
        if output.status.success() {
            return Ok(());
        }
        Err(ProbeError::Prepare {
            program: self.file_name(),
            what: format!(
                "`go build` failed ({}): {}",
                output.status,
                stderr_tail(&output.stderr)
            ),
            source: "go build".into(),
        })
    }

    /// The hash over what makes the program: its source, how it is made and the
    /// versions of the packages it is made with.
    fn hash(self, versions: &[String]) -> String {
        let mut text = format!(
            "imds-harness client program v{BUILD_VERSION}\nname={}\nmake={:?}\n",
            self.file_name(),
            self.make()
        );
        for (package, version) in self.packages().iter().zip(versions) {
            text.push_str(&format!("package={package} {version}\n"));
        }
        text.push_str(self.source());
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// The program in a sentence.
    pub fn description(self) -> &'static str {
        match self {
            SdkProgram::Go => "the go client (aws-sdk-go-v2)",
            SdkProgram::GoV1 => "the go-v1 client (aws-sdk-go)",
            SdkProgram::Ruby => "the ruby client (aws-sdk-core)",
            SdkProgram::Boto3 => "the boto3 client",
        }
    }
}

/// The installed versions of `packages`, or the ones missing.
fn installed_versions(packages: &[&str]) -> Result<Vec<String>, Vec<String>> {
    let mut versions = Vec::new();
    let mut missing = Vec::new();
    for package in packages {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}\t${Version}", package])
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                match text.split_once('\t') {
                    Some(("install ok installed", version)) => versions.push(version.to_string()),
                    _ => missing.push(package.to_string()),
                }
            }
            _ => missing.push(package.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(versions)
    } else {
        Err(missing)
    }
}

/// Every program ready (made if needed), for the probe image, which has them all.
pub fn prepare_all() -> Result<Vec<(SdkProgram, PathBuf)>, ProbeError> {
    SdkProgram::VARIANTS
        .iter()
        .map(|&p| p.prepare().map(|path| (p, path)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_the_files_and_hashes_follow_the_versions() {
        let names: Vec<String> = SdkProgram::VARIANTS
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            ["imdsh-go", "imdsh-go-v1", "imdsh-ruby", "imdsh-boto3"]
        );
        assert_eq!(SdkProgram::GoV1.file_name(), "imdsh-go-v1");
        assert!(SdkProgram::Go.source().contains("config.LoadDefaultConfig"));
        assert!(SdkProgram::GoV1.source().contains("session.NewSession"));
        assert!(SdkProgram::Ruby.source().starts_with("#!/usr/bin/ruby\n"));
        assert!(SdkProgram::Boto3
            .source()
            .starts_with("#!/usr/bin/python3\n"));
        let a = SdkProgram::Go.hash(&["1".into(), "2".into()]);
        assert_eq!(a, SdkProgram::Go.hash(&["1".into(), "2".into()]));
        assert_ne!(a, SdkProgram::Go.hash(&["1".into(), "3".into()]));
        assert_ne!(a, SdkProgram::GoV1.hash(&["1".into(), "2".into()]));
    }

    #[test]
    fn a_missing_package_names_the_install() {
        assert_eq!(
            installed_versions(&["imdsh-no-such-package"]),
            Err(vec!["imdsh-no-such-package".to_string()])
        );
    }
}

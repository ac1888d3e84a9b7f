//! Images of one executable and nothing else: the root file system is the program and
//! the shared objects it loads (none when it is linked statically), written as a tar by
//! the harness itself. The mock's image is made this way: no distribution, no shell.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::ImageError;

/// An executable and the shared objects the dynamic loader would map for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// The executable's path on this machine, as given to [`Executable::inspect`].
    pub path: PathBuf,
    /// Absolute paths as the loader resolves them (the loader itself included); empty for
    /// a static executable.
    pub libraries: Vec<PathBuf>,
}

impl Executable {
    /// Finds the shared objects `path` needs, with `ldd`.
    pub fn inspect(path: &Path) -> Result<Executable, ImageError> {
        let output = Command::new("ldd")
            .arg(path)
            .output()
            .map_err(|source| ImageError::Io {
                what: "running ldd (Debian's libc-bin) to list the mock's shared objects".into(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // ldd exits 1 for "not a dynamic executable": a static one needs nothing.
        let libraries = if output.status.success() {
            loaded_objects(&stdout)
        } else {
            Vec::new()
        };
        Ok(Executable {
            path: path.to_path_buf(),
            libraries,
        })
    }

    /// Every file of the image: where it comes from and where it goes, the executable first.
    fn files(&self, in_image: &Path) -> Vec<(PathBuf, PathBuf)> {
        std::iter::once((self.path.clone(), in_image.to_path_buf()))
            .chain(self.libraries.iter().map(|lib| (lib.clone(), lib.clone())))
            .collect()
    }

    /// One line per file: its place in the image and the SHA-256 of its content, for
    /// the recipe's hash.
    pub(super) fn describe(&self, in_image: &Path) -> Result<String, ImageError> {
        let mut text = String::new();
        for (source, target) in self.files(in_image) {
            let bytes = std::fs::read(&source).map_err(|source_err| ImageError::Io {
                what: format!("reading {}", source.display()),
                source: source_err,
            })?;
            text.push_str(&format!(
                "file={} sha256={}\n",
                target.display(),
                hex::encode(Sha256::digest(&bytes))
            ));
        }
        Ok(text)
    }

    /// Writes the root file system to `out`: the executable at `in_image` (mode 0755), the
    /// shared objects at their own paths (symbolic links followed), and an empty `/tmp`.
    /// Times and owners are fixed, so the same inputs give the same tar.
    pub(super) fn assemble(&self, in_image: &Path, out: &Path) -> Result<(), ImageError> {
        let io_error = |what: String| move |source: io::Error| ImageError::Io { what, source };
        let file =
            std::fs::File::create(out).map_err(io_error(format!("creating {}", out.display())))?;
        let mut tar = tar::Builder::new(io::BufWriter::new(file));
        let mut directories = std::collections::BTreeSet::new();
        let header = |mode: u32, size: u64, kind: tar::EntryType| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(size);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header
        };
        let mut tmp = header(0o1777, 0, tar::EntryType::Directory);
        tar.append_data(&mut tmp, "tmp/", io::empty())
            .map_err(io_error("writing /tmp".into()))?;
        for (source, target) in self.files(in_image) {
            let relative = target.strip_prefix("/").unwrap_or(&target);
            for parent in relative.ancestors().skip(1) {
                if parent.as_os_str().is_empty() || !directories.insert(parent.to_path_buf()) {
                    continue;
                }
                let mut dir = header(0o755, 0, tar::EntryType::Directory);
                tar.append_data(&mut dir, format!("{}/", parent.display()), io::empty())
                    .map_err(io_error(format!("writing {}", parent.display())))?;
            }
            let bytes = std::fs::read(&source)
                .map_err(io_error(format!("reading {}", source.display())))?;
            let mut file = header(0o755, bytes.len() as u64, tar::EntryType::Regular);
            tar.append_data(&mut file, relative, bytes.as_slice())
                .map_err(io_error(format!("writing {}", target.display())))?;
        }
        tar.into_inner()
            .and_then(|mut w| io::Write::flush(&mut w))
            .map_err(io_error(format!("finishing {}", out.display())))
    }
}

/// The absolute paths in `ldd`'s output: `name => /path (0x..)` and the loader's own
/// `/lib64/ld-linux-x86-64.so.2 (0x..)`; the vDSO has no file.
fn loaded_objects(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = line
                .split_once("=>")
                .map_or(line, |(_, right)| right.trim());
            path.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_files_the_loader_maps() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd5a5f2000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            loaded_objects(ldd),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(loaded_objects("\tnot a dynamic executable\n").is_empty());
        assert!(loaded_objects("\tstatically linked\n").is_empty());
    }

    #[test]
    fn the_tar_holds_the_executable_and_its_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("prog");
        let lib = dir.path().join("libx.so");
        std::fs::write(&exe, b"program").unwrap();
        std::fs::write(&lib, b"library").unwrap();
        let executable = Executable {
            path: exe,
            libraries: vec![lib.clone()],
        };
        let out = dir.path().join("root.tar");
        let in_image = Path::new("/usr/local/bin/prog");
        executable.assemble(in_image, &out).unwrap();
        let first = std::fs::read(&out).unwrap();
        executable.assemble(in_image, &out).unwrap();
        assert_eq!(first, std::fs::read(&out).unwrap(), "reproducible");
        let mut archive = tar::Archive::new(first.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            names.contains(&"usr/local/bin/prog".to_string()),
            "{names:?}"
        );
        let lib_in_tar = lib.strip_prefix("/").unwrap().display().to_string();
        assert!(names.contains(&lib_in_tar), "{names:?}");
        assert!(names.contains(&"tmp/".to_string()), "{names:?}");
        let description = executable.describe(in_image).unwrap();
        assert!(description.starts_with("file=/usr/local/bin/prog sha256="));
    }
}

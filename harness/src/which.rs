//! Finding programs the harness runs.

use std::path::PathBuf;

/// The folders of `PATH`, in order.
pub(crate) fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// `program` in the first folder of `PATH` that has it.
pub(crate) fn on_path(program: &str) -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// One of this project's executables: `$env_var`, this executable when it is `name`,
/// beside it (or one folder up, for test executables in `deps/`), then `PATH`.
pub(crate) fn project_binary(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Some(path.into());
    }
    let exe = std::env::current_exe().ok();
    if let Some(exe) = exe
        .as_ref()
        .filter(|e| e.file_name() == Some(name.as_ref()))
    {
        return Some(exe.clone());
    }
    exe.iter()
        .flat_map(|e| e.ancestors().skip(1).take(2))
        .map(|dir| dir.join(name))
        .chain(path_dirs().into_iter().map(|dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

//! The manual pages and shell completions of a command line, generated from its clap
//! definition (`clap_mangen`, `clap_complete`): what the Debian package ships.
//!
//! Written under one directory: `man1/<command>[-<subcommand>...].1` for the command and
//! every subcommand that is not hidden, and `completions/` with the files as each shell
//! looks them up (`<bin>` for bash, `_<bin>` for zsh, `<bin>.fish` for fish). Hidden
//! subcommands get no page; `clap_complete` still completes their names.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;
use thiserror::Error;

/// The shells completions are written for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// A file could not be written.
#[derive(Debug, Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct ManualError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The file name a shell loads the completions of `bin` from.
pub fn completion_file(shell: Shell, bin: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{bin}"),
        Shell::Fish => format!("{bin}.fish"),
        _ => bin.to_owned(),
    }
}

/// Writes the manual pages and completions of `cmd` under `out`; returns the files written.
pub fn write(cmd: &Command, out: &Path) -> Result<Vec<PathBuf>, ManualError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| ManualError { path, source }
    };
    let man = out.join("man1");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        fs::create_dir_all(dir).map_err(failed(dir))?;
    }
    let mut written = Vec::new();
    let mut built = cmd.clone().disable_help_subcommand(true);
    built.build();
    pages(&built, &man, &mut written)?;
    let bin = cmd.get_name().to_owned();
    for shell in SHELLS {
        let path = completions.join(completion_file(shell, &bin));
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &bin, &mut text);
        fs::write(&path, text).map_err(failed(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The page of `cmd` and of each of its visible subcommands, depth first.
fn pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), ManualError> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, dir, written)?;
    }
    let page = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(page.get_filename());
    let mut text = Vec::new();
    page.render(&mut text).map_err(|source| ManualError {
        path: path.clone(),
        source,
    })?;
    fs::write(&path, text).map_err(|source| ManualError {
        path: path.clone(),
        source,
    })?;
    written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn cli() -> Command {
        Command::new("tool")
            .version("1.2.3")
            .about("Does things")
            .subcommand(
                Command::new("relay")
                    .about("Serves")
                    .arg(Arg::new("state").long("state").help("Keep grants in FILE"))
                    .subcommand(Command::new("grant").about("Gives one build access")),
            )
            .subcommand(Command::new("secret").hide(true))
    }

    #[test]
    fn a_page_per_visible_subcommand_and_a_completion_per_shell() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(&cli(), dir.path()).unwrap();
        let mut names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "completions/_tool",
                "completions/tool",
                "completions/tool.fish",
                "man1/tool-relay-grant.1",
                "man1/tool-relay.1",
                "man1/tool.1",
            ]
        );
        let relay = fs::read_to_string(dir.path().join("man1/tool-relay.1")).unwrap();
        assert!(relay.contains(".TH tool-relay 1"), "{relay}");
        assert!(relay.contains("Keep grants in FILE"), "{relay}");
        let bash = fs::read_to_string(dir.path().join("completions/tool")).unwrap();
        assert!(
            bash.contains("complete -F _tool") && bash.contains("--state"),
            "{bash}"
        );
        let fish = fs::read_to_string(dir.path().join("completions/tool.fish")).unwrap();
        assert!(
            fish.contains("complete -c tool") && fish.contains("-l state"),
            "{fish}"
        );
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let err = write(&cli(), &file).unwrap_err().to_string();
        assert!(
            err.contains(&format!("cannot write {}/man1", file.display())),
            "{err}"
        );
    }
}

//! The configuration file (`/etc/imds-shim/config.toml`): the flags of each subcommand, one
//! TOML table per subcommand, read with `imds-shim --config FILE <subcommand>`.
//!
//! A table names a subcommand (`[relay]`, `[enforce]`, `[fence]`; a nested one such as
//! `[relay.grant]` its subcommand), and each key one of its long options: a string or number
//! is the option's value, `true` gives a flag (`false` leaves it out), an array repeats an
//! option that takes several. The flags are put right after the subcommand's name, so
//! options on the command line come after them and win. The whole file is checked against
//! the command line's definition before anything runs: a table or key that names nothing is
//! an error naming the file, the table and what it has.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};
use thiserror::Error;

/// Where the package installs the file, and where its units read it.
pub const DEFAULT_PATH: &str = "/etc/imds-shim/config.toml";
/// The largest file read: a configuration is a few hundred bytes.
pub const MAX_LEN: u64 = 64 * 1024;
/// The option that names the file.
pub const FLAG: &str = "--config";
/// Options no file may set.
const RESERVED: [&str; 3] = ["help", "version", "config"];

/// Why the configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// `--config` without a file.
    #[error("{FLAG} needs a file: imds-shim {FLAG} {DEFAULT_PATH} <COMMAND>")]
    MissingPath,
    /// The file could not be opened or read.
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_LEN`].
    #[error("the configuration {} is larger than {MAX_LEN} bytes: not a configuration file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Someone other than root and this user could change the file.
    #[error("the configuration {} {why}: it sets what a root service runs with, so only its owner (root) may write it (chmod go-w, chown root)", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file is not TOML.
    #[error("the configuration {} is not valid TOML: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        #[source]
        source: toml::de::Error,
    },
    /// A table names no subcommand.
    #[error("the configuration {}: [{table}] names no subcommand of `{parent}` (it has: {known})", path.display())]
    UnknownCommand {
        /// The file.
        path: PathBuf,
        /// The table's dotted name.
        table: String,
        /// The command it would be under.
        parent: String,
        /// The subcommands there are.
        known: String,
    },
    /// A key names no option of its table's subcommand.
    #[error("the configuration {}: [{table}] {key}: `{command}` has no option --{key} (it has: {known})", path.display())]
    UnknownOption {
        /// The file.
        path: PathBuf,
        /// The table's dotted name.
        table: String,
        /// The key.
        key: String,
        /// The subcommand.
        command: String,
        /// Its options.
        known: String,
    },
    /// A key's value does not fit its option.
    #[error("the configuration {}: [{table}] {key}: {why}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The table's dotted name.
        table: String,
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
}

/// A configuration file, read and checked against a command line.
#[derive(Debug, Clone)]
pub struct Config {
    path: PathBuf,
    table: toml::Table,
}

impl Config {
    /// Reads `path`: at most [`MAX_LEN`] bytes, owned by root or this user and writable by
    /// no one else.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        // Non-blocking, so that a FIFO put in its place cannot hang a service at boot.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        if !meta.is_file() {
            return Err(ConfigError::Unsafe {
                path: path.to_owned(),
                why: "is not a regular file".into(),
            });
        }
        check_owner(
            path,
            meta.uid(),
            meta.mode(),
            rustix::process::geteuid().as_raw(),
        )?;
        if meta.len() > MAX_LEN {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let mut text = String::new();
        file.take(MAX_LEN + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_LEN {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        Self::parse(path, &text)
    }

    /// Parses `text` (read from `path`, which the messages name).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            table,
        })
    }

    /// Checks every table and key against `root`, then gives the flags of the subcommand at
    /// `names` (e.g. `["relay"]`), by key; none when the file has no table for it.
    pub fn flags(&self, root: &Command, names: &[&str]) -> Result<Vec<OsString>, ConfigError> {
        self.check(root, &self.table, "")?;
        let mut table = &self.table;
        let mut cmd = root;
        let mut dotted = String::new();
        for name in names {
            let Some(toml::Value::Table(inner)) = table.get(*name) else {
                return Ok(Vec::new());
            };
            table = inner;
            cmd = cmd
                .find_subcommand(name)
                .expect("checked: every table names a subcommand");
            if !dotted.is_empty() {
                dotted.push('.');
            }
            dotted.push_str(name);
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut flags = Vec::new();
        for (key, value) in table {
            if !value.is_table() {
                flags.extend(self.option(cmd, &dotted, key, value)?);
            }
        }
        Ok(flags)
    }

    /// Every table under `cmd` names a subcommand, and every key an option of it.
    fn check(&self, cmd: &Command, table: &toml::Table, dotted: &str) -> Result<(), ConfigError> {
        for (key, value) in table {
            let here = if dotted.is_empty() {
                key.clone()
            } else {
                format!("{dotted}.{key}")
            };
            match value {
                toml::Value::Table(inner) => {
                    let Some(sub) = cmd.find_subcommand(key).filter(|s| !s.is_hide_set()) else {
                        return Err(ConfigError::UnknownCommand {
                            path: self.path.clone(),
                            table: here,
                            parent: command_path(cmd),
                            known: names(
                                cmd.get_subcommands()
                                    .filter(|s| !s.is_hide_set())
                                    .map(Command::get_name),
                            ),
                        });
                    };
                    self.check(sub, inner, &here)?;
                }
                _ if dotted.is_empty() => {
                    return Err(ConfigError::BadValue {
                        path: self.path.clone(),
                        table: "(top level)".into(),
                        key: key.clone(),
                        why: format!(
                            "options go in the table of their subcommand, e.g. [relay] {key} = ..."
                        ),
                    });
                }
                _ => {
                    self.option(cmd, dotted, key, value)?;
                }
            }
        }
        Ok(())
    }

    /// The flags one key gives.
    fn option(
        &self,
        cmd: &Command,
        table: &str,
        key: &str,
        value: &toml::Value,
    ) -> Result<Vec<OsString>, ConfigError> {
        let bad = |why: String| ConfigError::BadValue {
            path: self.path.clone(),
            table: table.to_owned(),
            key: key.to_owned(),
            why,
        };
        let arg = cmd
            .get_arguments()
            .filter(|a| !RESERVED.contains(&a.get_id().as_str()))
            .find(|a| a.get_long() == Some(key))
            .ok_or_else(|| ConfigError::UnknownOption {
                path: self.path.clone(),
                table: table.to_owned(),
                key: key.to_owned(),
                command: command_path(cmd),
                known: names(
                    cmd.get_arguments()
                        .filter(|a| !RESERVED.contains(&a.get_id().as_str()))
                        .filter_map(clap::Arg::get_long),
                ),
            })?;
        let flag = OsString::from(format!("--{key}"));
        let takes_value = arg.get_action().takes_values();
        let scalar = |v: &toml::Value| -> Result<String, ConfigError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(_) => Err(bad(format!(
                    "--{key} takes a value, not true or false"
                ))),
                other => Err(bad(format!(
                    "a {} is not a value of an option (a string, a number, or an array of them for an option given more than once)",
                    other.type_str()
                ))),
            }
        };
        match value {
            toml::Value::Boolean(on) if !takes_value => {
                Ok(if *on { vec![flag] } else { Vec::new() })
            }
            _ if !takes_value => Err(bad(format!("--{key} is a flag: true or false"))),
            toml::Value::Array(items) => {
                if !matches!(arg.get_action(), ArgAction::Append) {
                    return Err(bad(format!("--{key} takes one value, not an array")));
                }
                let mut flags = Vec::with_capacity(items.len() * 2);
                for item in items {
                    flags.push(flag.clone());
                    flags.push(scalar(item)?.into());
                }
                Ok(flags)
            }
            other => Ok(vec![flag, scalar(other)?.into()]),
        }
    }
}

/// Refuses a file someone other than its owner may write, or whose owner is neither root nor
/// `euid`.
fn check_owner(path: &Path, uid: u32, mode: u32, euid: u32) -> Result<(), ConfigError> {
    let why = if mode & 0o022 != 0 {
        Some(format!(
            "is writable by its group or others (mode {:o})",
            mode & 0o7777
        ))
    } else if uid != 0 && uid != euid {
        Some(format!(
            "is owned by uid {uid}, neither root nor this user (uid {euid})"
        ))
    } else {
        None
    };
    why.map_or(Ok(()), |why| {
        Err(ConfigError::Unsafe {
            path: path.to_owned(),
            why,
        })
    })
}

/// `imds-shim relay grant`, for the messages.
fn command_path(cmd: &Command) -> String {
    cmd.get_bin_name().unwrap_or(cmd.get_name()).to_owned()
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// `args` (the program's, the program first) with the flags of `--config FILE` put after the
/// subcommand they belong to; unchanged when `--config` is not the first argument.
/// `--config FILE` stays where it is: `root` must accept it (and ignore it).
pub fn expand(root: &Command, args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return Ok(args);
    };
    let (path, rest) = if first == FLAG {
        let path = args.get(2).ok_or(ConfigError::MissingPath)?;
        (PathBuf::from(path), 3)
    } else if let Some(path) = first.strip_prefix("--config=") {
        (PathBuf::from(path), 2)
    } else {
        return Ok(args);
    };
    if path.as_os_str().is_empty() {
        return Err(ConfigError::MissingPath);
    }
    let config = Config::load(&path)?;
    let mut cmd = root;
    let mut chain = Vec::new();
    let mut at = rest;
    while let Some(sub) = args
        .get(at)
        .and_then(|a| a.to_str())
        .and_then(|a| cmd.find_subcommand(a))
    {
        chain.push(sub.get_name());
        cmd = sub;
        at += 1;
    }
    let flags = config.flags(root, &chain)?;
    let mut out = args[..at].to_vec();
    out.extend(flags);
    out.extend_from_slice(&args[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn root() -> Command {
        Command::new("imds-shim")
            .arg(Arg::new("config").long("config"))
            .subcommand(
                Command::new("relay")
                    .arg(Arg::new("state").long("state"))
                    .arg(Arg::new("burst").long("burst"))
                    .arg(Arg::new("rate").long("rate"))
                    .subcommand(Command::new("grant").arg(Arg::new("ttl").long("ttl"))),
            )
            .subcommand(
                Command::new("enforce")
                    .arg(Arg::new("topology").long("topology"))
                    .arg(Arg::new("apply").long("apply").action(ArgAction::SetTrue)),
            )
            .subcommand(
                Command::new("fence").arg(Arg::new("user").long("user").action(ArgAction::Append)),
            )
            .subcommand(
                Command::new("manual")
                    .hide(true)
                    .arg(Arg::new("out").long("out")),
            )
    }

    fn flags(text: &str, names: &[&str]) -> Result<Vec<String>, ConfigError> {
        let config = Config::parse(Path::new("/etc/imds-shim/config.toml"), text)?;
        Ok(config
            .flags(&root(), names)?
            .into_iter()
            .map(|f| f.into_string().unwrap())
            .collect())
    }

    const EXAMPLE: &str = r#"
        [relay]
        state = "/var/lib/imds-shim/grants.json"
        burst = 40
        rate = 2.5
        [relay.grant]
        ttl = "2h"
        [enforce]
        topology = "earthly-run"
        apply = false
        [fence]
        user = ["builder", "ci"]
    "#;

    #[test]
    fn each_table_gives_its_subcommands_flags() {
        assert_eq!(
            flags(EXAMPLE, &["relay"]).unwrap(),
            [
                "--burst",
                "40",
                "--rate",
                "2.5",
                "--state",
                "/var/lib/imds-shim/grants.json"
            ]
        );
        assert_eq!(
            flags(EXAMPLE, &["relay", "grant"]).unwrap(),
            ["--ttl", "2h"]
        );
        assert_eq!(
            flags(EXAMPLE, &["enforce"]).unwrap(),
            ["--topology", "earthly-run"]
        );
        let applied = EXAMPLE.replace("apply = false", "apply = true");
        assert_eq!(
            flags(&applied, &["enforce"]).unwrap(),
            ["--apply", "--topology", "earthly-run"]
        );
        assert_eq!(
            flags(EXAMPLE, &["fence"]).unwrap(),
            ["--user", "builder", "--user", "ci"]
        );
        assert!(flags(EXAMPLE, &[]).unwrap().is_empty());
        assert!(flags("[fence]\nuser = []\n", &["relay"])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn what_names_nothing_is_refused_naming_the_file_table_and_choices() {
        for (text, wanted) in [
            (
                "[relai]\nstate = \"x\"\n",
                "[relai] names no subcommand of `imds-shim` (it has: relay, enforce, fence)",
            ),
            ("[manual]\nout = \"x\"\n", "[manual] names no subcommand"),
            (
                "[relay]\nstat = \"x\"\n",
                "[relay] stat: `relay` has no option --stat (it has: state, burst, rate)",
            ),
            ("[relay]\nhelp = true\n", "has no option --help"),
            (
                "[relay.grant]\nstate = \"x\"\n",
                "[relay.grant] state: `grant` has no option --state",
            ),
            (
                "[relay.grunt]\n",
                "[relay.grunt] names no subcommand of `relay` (it has: grant)",
            ),
            (
                "state = \"x\"\n",
                "options go in the table of their subcommand, e.g. [relay] state = ...",
            ),
            (
                "[enforce]\napply = \"yes\"\n",
                "[enforce] apply: --apply is a flag: true or false",
            ),
            (
                "[enforce]\ntopology = true\n",
                "--topology takes a value, not true or false",
            ),
            (
                "[relay]\nstate = [\"a\", \"b\"]\n",
                "--state takes one value, not an array",
            ),
            (
                "[fence]\nuser = [[\"a\"]]\n",
                "a array is not a value of an option",
            ),
            (
                "[relay]\nstate = 1979-05-27\n",
                "a datetime is not a value of an option",
            ),
            ("[relay]\nstate = \n", "is not valid TOML"),
            ("[relay]\nstate = \"a\"\n[relay]\n", "is not valid TOML"),
        ] {
            // A mistake anywhere stops every command, not only the one whose table it is in.
            let err = flags(text, &["enforce"]).unwrap_err().to_string();
            assert!(err.contains("/etc/imds-shim/config.toml"), "{err}");
            assert!(err.contains(wanted), "{text:?}: {err}");
        }
    }

    #[test]
    fn only_root_or_this_user_may_write_the_file() {
        let path = Path::new("/etc/imds-shim/config.toml");
        check_owner(path, 0, 0o100_644, 1000).unwrap();
        check_owner(path, 1000, 0o100_600, 1000).unwrap();
        for (uid, mode, wanted) in [
            (0, 0o100_664, "writable by its group or others (mode 664)"),
            (0, 0o100_646, "writable by its group or others (mode 646)"),
            (
                1001,
                0o100_644,
                "owned by uid 1001, neither root nor this user (uid 1000)",
            ),
        ] {
            let err = check_owner(path, uid, mode, 1000).unwrap_err().to_string();
            assert!(err.contains(wanted) && err.contains("chmod go-w"), "{err}");
        }
    }

    fn args(argv: &[&str]) -> Vec<OsString> {
        argv.iter().map(OsString::from).collect()
    }

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn expand_puts_the_flags_after_the_subcommand_so_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), EXAMPLE, 0o644);
        let file = path.to_str().unwrap();
        let out = expand(
            &root(),
            args(&["imds-shim", "--config", file, "relay", "--burst", "5"]),
        )
        .unwrap();
        assert_eq!(
            out,
            args(&[
                "imds-shim",
                "--config",
                file,
                "relay",
                "--burst",
                "40",
                "--rate",
                "2.5",
                "--state",
                "/var/lib/imds-shim/grants.json",
                "--burst",
                "5",
            ])
        );
        let eq = format!("--config={file}");
        let out = expand(
            &root(),
            args(&["imds-shim", &eq, "relay", "grant", "--label", "x"]),
        )
        .unwrap();
        assert_eq!(
            out,
            args(&[
                "imds-shim",
                &eq,
                "relay",
                "grant",
                "--ttl",
                "2h",
                "--label",
                "x"
            ])
        );
        // Without --config first, nothing is read.
        let plain = args(&["imds-shim", "relay", "--config", "/nonexistent"]);
        assert_eq!(expand(&root(), plain.clone()).unwrap(), plain);
        // No subcommand: clap says what is missing.
        assert_eq!(
            expand(&root(), args(&["imds-shim", "--config", file])).unwrap(),
            args(&["imds-shim", "--config", file])
        );
    }

    #[test]
    fn expand_refuses_a_missing_oversized_or_unsafe_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = |argv: &[&str]| expand(&root(), args(argv)).unwrap_err().to_string();
        assert!(err(&["imds-shim", "--config"]).contains("--config needs a file"));
        assert!(err(&["imds-shim", "--config=", "relay"]).contains("--config needs a file"));
        let missing = dir.path().join("none.toml");
        assert!(
            err(&["imds-shim", "--config", missing.to_str().unwrap(), "relay"])
                .contains("cannot read the configuration")
        );
        let writable = write(dir.path(), EXAMPLE, 0o666);
        assert!(
            err(&["imds-shim", "--config", writable.to_str().unwrap(), "relay"])
                .contains("writable by its group or others (mode 666)")
        );
        let big = write(
            dir.path(),
            &format!("# {}\n", "x".repeat(MAX_LEN as usize)),
            0o600,
        );
        assert!(
            err(&["imds-shim", "--config", big.to_str().unwrap(), "relay"])
                .contains("larger than 65536 bytes")
        );
        assert!(err(&[
            "imds-shim",
            "--config",
            dir.path().to_str().unwrap(),
            "relay"
        ])
        .contains("is not a regular file"));
        let fifo = dir.path().join("fifo.toml");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert!(
            err(&["imds-shim", "--config", fifo.to_str().unwrap(), "relay"])
                .contains("is not a regular file")
        );
        let binary = dir.path().join("binary.toml");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(
            err(&["imds-shim", "--config", binary.to_str().unwrap(), "relay"])
                .contains("cannot read the configuration")
        );
    }
}

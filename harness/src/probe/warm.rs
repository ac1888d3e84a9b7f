//! Warm starts of the interpreted clients (the AWS CLI and boto3 on Python, the Ruby
//! SDK): most of a run of theirs is importing the SDK (0.3 to 0.4 s of CPU of the CLI's
//! 0.5 s here), the same in every run. A warm start imports it once per harness process,
//! in an interpreter that stays up (`harness/clients/warm/`), and forks that interpreter
//! for each run; the child enters the leaf's network namespace, takes the run's stdin,
//! stdout, stderr and environment, and runs the client's own entry script (`/usr/bin/aws`,
//! `imdsh-boto3`, `imdsh-ruby`) as the interpreter would. Nothing AWS-related has run
//! before the fork: every run resolves its credentials from scratch. A `--starts cold`
//! measurement runs each client as a process of its own instead, for comparison.
//!
//! The interpreter is the one the script's `#!` line names; a script without such a line
//! is started cold.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::env::{base_env, ClientEnv};
use super::leaf::Program;
use super::outcome::ProbeError;
use super::programs::SdkProgram;

/// How the interpreted clients are started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Starts {
    /// Forked from an interpreter that has imported the SDK once.
    #[default]
    Warm,
    /// A process of its own for every run.
    Cold,
}

/// An interpreter a warm start runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interpreter {
    Python,
    Ruby,
}

impl Interpreter {
    /// The warm start's own program, run with `-c`/`-e`.
    fn source(self) -> &'static str {
        match self {
            Interpreter::Python => include_str!("../../clients/warm/warm.py"),
            Interpreter::Ruby => include_str!("../../clients/warm/warm.rb"),
        }
    }

    /// Whether `binary` is this interpreter (`python3`, `python3.11`; `ruby`, `ruby3.1`).
    fn is(self, binary: &Path) -> bool {
        let name = match self {
            Interpreter::Python => "python",
            Interpreter::Ruby => "ruby",
        };
        binary
            .file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with(name))
    }

    fn inline_flag(self) -> &'static str {
        match self {
            Interpreter::Python => "-c",
            Interpreter::Ruby => "-e",
        }
    }
}

/// The interpreter a program runs on and what it imports before the client's own code.
fn plan(program: Program) -> Option<(Interpreter, &'static [&'static str])> {
    match program {
        Program::AwsCli => Some((
            Interpreter::Python,
            &["awscli.clidriver", "awscli.handlers", "_strptime"],
        )),
        Program::Sdk(SdkProgram::Boto3) => Some((
            Interpreter::Python,
            &["boto3", "json", "_strptime", "pkgutil"],
        )),
        Program::Sdk(SdkProgram::Ruby) => Some((Interpreter::Ruby, &["aws-sdk-core", "json"])),
        Program::Sdk(SdkProgram::Go | SdkProgram::GoV1) | Program::Shim => None,
    }
}

/// The interpreter a script's `#!` line names, when it names one directly.
fn shebang(script: &Path) -> Option<PathBuf> {
    let mut head = [0; 256];
    let n = File::open(script).ok()?.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let interpreter = line.strip_prefix("#!")?.split_whitespace().next()?;
    let path = PathBuf::from(interpreter);
    (path.is_absolute() && !path.ends_with("env")).then_some(path)
}

/// The warm starts of one harness process: an interpreter per client script, started on
/// its first run and ended when this is dropped (or the process ends: each ends at the
/// end of its stdin, killing its runs).
#[derive(Default)]
pub struct WarmStarts {
    interpreters: Mutex<HashMap<PathBuf, Arc<Zygote>>>,
}

impl fmt::Debug for WarmStarts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let running = self.lock().len();
        write!(f, "WarmStarts({running} interpreters)")
    }
}

impl WarmStarts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Zygote>>> {
        self.interpreters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The process ids of the interpreters started so far (each ends when this is dropped).
    pub fn pids(&self) -> Vec<u32> {
        self.lock()
            .values()
            .map(|zygote| {
                zygote
                    .child
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .id()
            })
            .collect()
    }

    /// Runs `script args` (the path of `program`) in the network namespace `netns`, as
    /// `ip netns exec NETNS SCRIPT ARGS` would with `env`; `None` when `program` is not
    /// started warm (a native program, or a script whose `#!` line names no interpreter
    /// of the kind expected, such as a shell script standing in for the AWS CLI).
    pub fn run(
        &self,
        program: Program,
        script: &Path,
        netns: &Path,
        args: &[&str],
        env: &ClientEnv,
    ) -> Option<Result<Output, ProbeError>> {
        let (interpreter, imports) = plan(program)?;
        let binary = shebang(script).filter(|binary| interpreter.is(binary))?;
        let zygote = {
            let mut interpreters = self.lock();
            match interpreters.get(script).filter(|z| z.is_up()) {
                Some(zygote) => Ok(zygote.clone()),
                None => Zygote::start(interpreter, &binary, imports).map(|zygote| {
                    let zygote = Arc::new(zygote);
                    interpreters.insert(script.to_path_buf(), zygote.clone());
                    zygote
                }),
            }
        };
        Some(
            zygote
                .and_then(|zygote| zygote.run(script, netns, args, env))
                .map_err(|source| ProbeError::Spawn {
                    program: format!("{} (warm start)", script.display()),
                    place: format!("namespace {}", netns.display()),
                    source,
                }),
        )
    }
}

/// How long an interpreter has to end (and kill its runs) once its stdin ended.
const ENDING: Duration = Duration::from_secs(2);

/// One run, as the interpreter reads it.
#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    netns: &'a Path,
    program: &'a Path,
    args: &'a [&'a str],
    env: HashMap<String, String>,
    stdout: String,
    stderr: String,
}

/// What the interpreter reports: that it is ready, or how a run ended.
#[derive(Deserialize)]
#[serde(untagged)]
enum Report {
    Ended { id: u64, status: i32 },
    Ready { ready: bool },
}

/// The runs waiting for their end, by id; `None` once the interpreter's reports ended.
type Waiting = Arc<Mutex<Option<HashMap<u64, SyncSender<ExitStatus>>>>>;

/// An interpreter with the SDK imported, forking a child per run.
struct Zygote {
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    waiting: Waiting,
    next_id: AtomicU64,
    /// Its own stderr (an import that failed), for the error of a run it could not do.
    stderr: File,
}

impl Zygote {
    fn start(interpreter: Interpreter, binary: &Path, imports: &[&str]) -> std::io::Result<Self> {
        let stderr = tempfile::tempfile()?;
        let mut child = Command::new(binary)
            .arg(interpreter.inline_flag())
            .arg(interpreter.source())
            .args(imports)
            .env_clear()
            .envs(base_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone()?)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let mut reports = BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        let ready = reports.read_line(&mut first).is_ok()
            && matches!(
                serde_json::from_str(&first),
                Ok(Report::Ready { ready: true })
            );
        let zygote = Zygote {
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            waiting: Arc::new(Mutex::new(Some(HashMap::new()))),
            next_id: AtomicU64::new(0),
            stderr,
        };
        if !ready {
            return Err(zygote.ended(&format!("{} did not start", binary.display())));
        }
        let waiting = zygote.waiting.clone();
        std::thread::Builder::new()
            .name("warm starts".into())
            .spawn(move || {
                for line in reports.lines() {
                    let Ok(line) = line else { break };
                    if let Ok(Report::Ended { id, status }) = serde_json::from_str(&line) {
                        let waiter = waiting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .as_mut()
                            .and_then(|waiting| waiting.remove(&id));
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(ExitStatus::from_raw(status));
                        }
                    }
                }
                // Its stdout ended: so did it. Whoever waits hears it from their channel.
                waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
            })?;
        Ok(zygote)
    }

    fn is_up(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(child.try_wait(), Ok(None))
    }

    /// The error of a run that it could not do, with what it said on its stderr.
    fn ended(&self, what: &str) -> std::io::Error {
        let mut said = String::new();
        let mut stderr = &self.stderr;
        let _ = stderr.rewind();
        let _ = stderr.read_to_string(&mut said);
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        std::io::Error::other(format!(
            "{what}; the warm start said: {}",
            if tail.is_empty() {
                "nothing".to_string()
            } else {
                tail.join(" | ")
            }
        ))
    }

    fn run(
        &self,
        script: &Path,
        netns: &Path,
        args: &[&str],
        env: &ClientEnv,
    ) -> std::io::Result<Output> {
        // The child opens these through this process's descriptors: nothing is left on disk.
        let stdout = tempfile::tempfile()?;
        let stderr = tempfile::tempfile()?;
        let through = |file: &File| format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request {
            id,
            netns,
            program: script,
            args,
            env: env.full(),
            stdout: through(&stdout),
            stderr: through(&stderr),
        };
        let mut line = serde_json::to_vec(&request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let (ended, status) = sync_channel(1);
        match self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(waiting) => waiting.insert(id, ended),
            None => return Err(self.ended("it had ended")),
        };
        let sent = match self
            .stdin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            Some(stdin) => stdin.write_all(&line),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = sent {
            return Err(self.ended(&format!("sending it a run: {e}")));
        }
        let status = status
            .recv()
            .map_err(|_| self.ended("it ended during a run"))?;
        let read = |mut file: File| -> std::io::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            file.rewind()?;
            file.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        Ok(Output {
            status,
            stdout: read(stdout)?,
            stderr: read(stderr)?,
        })
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // The end of its stdin ends it, and it kills whatever still runs first.
        drop(
            self.stdin
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + ENDING;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray as _;

    use super::*;

    #[test]
    fn the_interpreter_is_the_one_the_script_names() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let python = script("a", "#!/usr/bin/python3\nprint(1)\n");
        assert_eq!(shebang(&python), Some(PathBuf::from("/usr/bin/python3")));
        let ruby = script("b", "#!/usr/bin/ruby -w\n");
        assert_eq!(shebang(&ruby), Some(PathBuf::from("/usr/bin/ruby")));
        for (name, text) in [
            ("c", "#!/usr/bin/env python3\n"),
            ("d", "print(1)\n"),
            ("e", "#!python3\n"),
            ("f", ""),
        ] {
            assert_eq!(shebang(&script(name, text)), None, "{text:?}");
        }
        assert_eq!(shebang(&dir.path().join("missing")), None);
    }

    #[test]
    fn an_interpreter_is_known_by_its_name() {
        assert!(Interpreter::Python.is(Path::new("/usr/bin/python3")));
        assert!(Interpreter::Python.is(Path::new("/usr/bin/python3.11")));
        assert!(Interpreter::Ruby.is(Path::new("/usr/bin/ruby")));
        assert!(!Interpreter::Python.is(Path::new("/bin/sh")));
        assert!(!Interpreter::Ruby.is(Path::new("/usr/bin/python3")));
    }

    /// A started interpreter is among the pids and runs until its warm starts are
    /// dropped (Debian's python3, which the machine's tools need anyway; no namespace).
    #[test]
    fn the_pids_are_the_running_interpreters_and_dropping_the_starts_ends_them() {
        let python = Path::new("/usr/bin/python3");
        let starts = WarmStarts::default();
        assert_eq!(starts.pids(), Vec::<u32>::new());
        let zygote = Zygote::start(Interpreter::Python, python, &["json"]).unwrap();
        starts.lock().insert(python.to_path_buf(), Arc::new(zygote));
        let pids = starts.pids();
        assert_eq!(pids.len(), 1);
        let proc = PathBuf::from(format!("/proc/{}", pids[0]));
        let cmdline = std::fs::read(proc.join("cmdline")).unwrap();
        assert!(String::from_utf8_lossy(&cmdline).contains("The warm start of"));
        drop(starts);
        assert!(!proc.exists(), "the interpreter outlived its warm starts");
    }

    #[test]
    fn only_the_interpreted_clients_start_warm() {
        assert!(plan(Program::AwsCli).is_some());
        assert!(plan(Program::Shim).is_none());
        for program in SdkProgram::VARIANTS {
            let interpreted = matches!(program, SdkProgram::Boto3 | SdkProgram::Ruby);
            assert_eq!(
                plan(Program::Sdk(*program)).is_some(),
                interpreted,
                "{program}"
            );
        }
    }
}

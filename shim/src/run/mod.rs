//! `imds-shim run -- <command...>`: check the hop limit, run the command with its output
//! streamed (and kept), and when it fails for want of credentials, say why and what to do.
//!
//! - [`classify`]: does the output show a credentials failure, from which client?
//! - [`diagnosis`]: the text shown then.
//! - [`signals`]: SIGINT and SIGTERM passed on to the command while it runs.

pub mod classify;
pub mod diagnosis;
pub mod signals;

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

/// The most output kept for classification; beyond it the oldest half is dropped.
const MAX_KEPT: usize = 8 << 20;

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit status to pass on: the command's code, or 128 + the signal that killed it.
    pub code: i32,
    /// Its stdout and stderr, as they came (interleaved by arrival, roughly).
    pub output: String,
}

/// Whether `argv` runs Earthly (`earthly ...`, or a path ending in it).
pub fn is_earthly(argv: &[OsString]) -> bool {
    argv.first()
        .and_then(|p| Path::new(p).file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("earthly"))
}

/// Runs `argv` through duct, stdin inherited, stdout and stderr copied to ours as they come
/// and kept. SIGINT and SIGTERM do not end the shim while the command runs: they are
/// passed on to it (see [`signals`] for which and why), and the command's status is
/// returned.
pub fn execute(argv: &[OsString]) -> io::Result<Finished> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?;
    let kept = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (out_r, out_w) = io::pipe()?;
    let (err_r, err_w) = io::pipe()?;
    // Before the start: a signal between the start and the handlers would kill the shim
    // and leave the command running.
    let forwarding = signals::Forwarding::install()?;
    let handle = {
        // The expression owns the write ends; it is dropped right after the start, so the
        // readers see end-of-file when the command (and its children) close theirs.
        let expr = duct::cmd(program, args)
            .stdout_file(out_w)
            .stderr_file(err_w)
            .unchecked();
        expr.start()?
    };
    if let Some(&pid) = handle.pids().first() {
        forwarding.started(pid);
    }
    let copy_out = spawn_copy(out_r, kept.clone(), || Box::new(io::stdout()));
    let copy_err = spawn_copy(err_r, kept.clone(), || Box::new(io::stderr()));
    forwarding.wait_exited();
    let output = handle.wait()?;
    drop(forwarding);
    for t in [copy_out, copy_err] {
        t.join()
            .map_err(|_| io::Error::other("an output thread panicked"))??;
    }
    let code = exit_code(output.status);
    let kept = std::mem::take(&mut *kept.lock().expect("output lock"));
    Ok(Finished {
        code,
        output: String::from_utf8_lossy(&kept).into_owned(),
    })
}

fn spawn_copy(
    mut from: io::PipeReader,
    kept: Arc<Mutex<Vec<u8>>>,
    to: fn() -> Box<dyn Write + Send>,
) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        let mut to = to();
        let mut buf = [0u8; 8192];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // A closed stdout of ours must not stop the command: keep reading, stop writing.
            let _ = to.write_all(&buf[..n]).and_then(|()| to.flush());
            let mut kept = kept.lock().expect("output lock");
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > MAX_KEPT {
                kept.drain(..MAX_KEPT / 2);
            }
        }
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn exit_codes_and_both_streams_are_kept() {
        let f = execute(&argv(&["sh", "-c", "echo out; echo err >&2; exit 7"])).unwrap();
        assert_eq!(f.code, 7);
        assert!(
            f.output.contains("out\n") && f.output.contains("err\n"),
            "{f:?}"
        );
        assert_eq!(execute(&argv(&["true"])).unwrap().code, 0);
    }

    #[test]
    fn a_signal_becomes_128_plus_it() {
        let f = execute(&argv(&["sh", "-c", "kill -TERM $$"])).unwrap();
        assert_eq!(f.code, 128 + 15);
    }

    #[test]
    fn a_missing_program_is_an_error() {
        assert!(execute(&argv(&["/nonexistent/imds-shim-test"])).is_err());
        assert!(execute(&[]).is_err());
    }

    #[test]
    fn earthly_is_recognised() {
        assert!(is_earthly(&argv(&["earthly", "+probe"])));
        assert!(is_earthly(&argv(&["/usr/local/bin/earthly", "+probe"])));
        assert!(!is_earthly(&argv(&["docker", "build", "."])));
    }
}

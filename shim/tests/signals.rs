//! `imds-shim run` passes SIGINT and SIGTERM on to the command it runs, and exits with the
//! command's status (128 + N when it died of signal N).
//!
//! Every run is `--no-check` (nothing is asked of any IMDS) in a cleared environment with
//! `AWS_EC2_METADATA_DISABLED=true`. The command is a shell script that prints `ready PID`
//! once its trap is set and then waits at most 10 s; a test that fails kills it.

#![allow(
    unsafe_code,
    reason = "signals and a pseudo-terminal for the wrapped build, as a terminal would send them"
)]

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any step may take before the test gives up.
const WAIT: Duration = Duration::from_secs(10);

/// Waits (at most 10 s, then exit 3) for `sig`; on it, prints `got SIG` and exits `code`.
fn trapping(sig: &str, code: u8) -> String {
    format!(
        "trap 'echo got {sig}; exit {code}' {sig}; echo ready $$; \
         i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 3"
    )
}

/// Has no trap: the signal kills it (`sleep` in the shell's place).
const UNTRAPPED: &str = "echo ready $$; exec sleep 10";

/// How the shim's process starts: the dispositions of SIGINT and SIGTERM it inherits
/// (whatever the test runner's were), and whether it leads a session on a terminal.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// Both signals at their default.
    Plain,
    /// SIGINT ignored, as for `cmd &` in a script.
    IgnoringInt,
    /// A new session with this terminal (a pty's secondary side) as its controlling one.
    OnTerminal(&'a CString),
}

struct Shim {
    child: Child,
    lines: mpsc::Receiver<String>,
    script: Option<libc::pid_t>,
    stdout: Vec<String>,
}

impl Shim {
    fn start(script: &str, start: Start) -> Shim {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imds-shim"));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["run", "--no-check", "--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let terminal = match start {
            Start::OnTerminal(path) => Some(path.clone()),
            _ => None,
        };
        let ignore_int = matches!(start, Start::IgnoringInt);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let int = if ignore_int {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                set_disposition(libc::SIGINT, int)?;
                set_disposition(libc::SIGTERM, libc::SIG_DFL)?;
                if let Some(path) = &terminal {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let fd = libc::open(path.as_ptr(), libc::O_RDWR);
                    if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start imds-shim");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut shim = Shim {
            child,
            lines,
            script: None,
            stdout: Vec::new(),
        };
        let ready = shim
            .next_line()
            .unwrap_or_else(|| panic!("no `ready` line: {}", shim.stderr()));
        let pid = ready
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a ready line: {ready:?}"));
        shim.script = Some(pid);
        shim
    }

    fn next_line(&mut self) -> Option<String> {
        let line = self.lines.recv_timeout(WAIT).ok()?;
        self.stdout.push(line.clone());
        Some(line)
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill the shim");
    }

    /// The shim's exit status and all it printed on stdout. The `Shim` lives on until the
    /// test's assertions are done, so that a failing one kills the script (see `drop`).
    fn finish(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the shim is still running {WAIT:?} after the signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while self.next_line().is_some() {}
        (status, self.stdout.join("\n"))
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        // A failed test must not leave the script (or the shim) running.
        if std::thread::panicking() {
            if let Some(pid) = self.script {
                // SAFETY: kill(2); the script is ours and at most 10 s old.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sigaction(2), async-signal-safe.
fn set_disposition(sig: libc::c_int, handler: libc::sighandler_t) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction with a handler of SIG_DFL or SIG_IGN.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&raw mut action.sa_mask);
        if libc::sigaction(sig, &raw const action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn assert_exit(status: ExitStatus, code: i32, stdout: &str) {
    assert_eq!(
        (status.code(), status.signal()),
        (Some(code), None),
        "the shim must exit {code} (stdout: {stdout:?})"
    );
}

#[test]
fn sigterm_to_the_shim_reaches_the_command_and_its_exit_code_comes_back() {
    let mut shim = Shim::start(&trapping("TERM", 42), Start::Plain);
    shim.signal(libc::SIGTERM);
    let (status, stdout) = shim.finish();
    assert!(stdout.contains("got TERM"), "{stdout:?}");
    assert_exit(status, 42, &stdout);
}

#[test]
fn sigint_to_the_shim_reaches_the_command_and_its_exit_code_comes_back() {
    let mut shim = Shim::start(&trapping("INT", 43), Start::Plain);
    shim.signal(libc::SIGINT);
    let (status, stdout) = shim.finish();
    assert!(stdout.contains("got INT"), "{stdout:?}");
    assert_exit(status, 43, &stdout);
}

#[test]
fn a_command_killed_by_the_passed_on_signal_gives_128_plus_it() {
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut shim = Shim::start(UNTRAPPED, Start::Plain);
        shim.signal(sig);
        let (status, stdout) = shim.finish();
        assert_exit(status, code, &stdout);
    }
}

#[test]
fn a_signal_ignored_when_the_shim_starts_stays_ignored() {
    // SIGINT ignored (as for `imds-shim run ... &` in a script): the command inherits
    // that, and the shim passes nothing on; SIGTERM still is.
    let mut shim = Shim::start(UNTRAPPED, Start::IgnoringInt);
    shim.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    shim.signal(libc::SIGTERM);
    let (status, stdout) = shim.finish();
    assert_exit(status, 143, &stdout);
}

#[test]
fn ctrl_c_at_a_terminal_reaches_the_command_and_the_shim_exits_with_its_status() {
    // A pty: the shim leads a session on it, with the command in its (foreground)
    // process group; ^C typed into the terminal makes the kernel send SIGINT to the group.
    // SAFETY: posix_openpt and friends on a descriptor we own.
    let (main, secondary) = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        (fd, std::ffi::CStr::from_ptr(name.as_ptr()).to_owned())
    };
    let mut shim = Shim::start(&trapping("INT", 44), Start::OnTerminal(&secondary));
    // SAFETY: writes one byte to the pty's main side.
    assert_eq!(unsafe { libc::write(main, b"\x03".as_ptr().cast(), 1) }, 1);
    let (status, stdout) = shim.finish();
    // SAFETY: closes our own descriptor.
    unsafe { libc::close(main) };
    assert!(stdout.contains("got INT"), "{stdout:?}");
    assert_exit(status, 44, &stdout);
}

//! A running `imds-shim relay` in a namespace of a simulated instance, with its control
//! socket and log in a scratch directory, and the grants asked of it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use imds_harness::backend::netns::Namespace;
use imds_harness::probe::env::ClientEnv;

use crate::bins;
use crate::output::{show, text};

/// The relay's process, killed on drop if still running.
pub struct RelayProcess {
    handle: duct::Handle,
    log: PathBuf,
    control: PathBuf,
}

impl RelayProcess {
    /// Starts `imds-shim relay <extra>` in `ns` with `env` (its log and control socket in
    /// `dir`); waits until it serves.
    pub fn start(ns: &Namespace, dir: &Path, env: &ClientEnv, extra: &[&str]) -> RelayProcess {
        Self::start_named(ns, dir, env, "relay", extra)
    }

    /// [`RelayProcess::start`], its log in `<name>.log` (a test that restarts a relay keeps
    /// each one's log).
    pub fn start_named(
        ns: &Namespace,
        dir: &Path,
        env: &ClientEnv,
        name: &str,
        extra: &[&str],
    ) -> RelayProcess {
        let log = dir.join(format!("{name}.log"));
        let control = dir.join("relay.sock");
        let mut args = vec!["relay", "--control", control.to_str().unwrap()];
        args.extend_from_slice(extra);
        let handle = env
            .apply(ns.exec(bins::shim(), &args))
            .stdout_null()
            .stderr_path(&log)
            .unchecked()
            .start()
            .unwrap();
        let relay = RelayProcess {
            handle,
            log,
            control,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = relay.log();
            if log.contains("serving on") {
                return relay;
            }
            if let Ok(Some(out)) = relay.handle.try_wait() {
                panic!("the relay exited: {:?}\n{log}", out.status);
            }
            assert!(Instant::now() < deadline, "the relay did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `imds-shim relay <args> --control <its socket>` from here (a file: no packet sent).
    pub fn command(&self, args: &[&str]) -> Output {
        let mut all = vec!["relay"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--control", self.control.to_str().unwrap()]);
        duct::cmd(bins::shim(), &all)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap()
    }

    /// A new grant's environment, `NAME=value` pairs.
    pub fn grant(&self, extra: &[&str]) -> Vec<(String, String)> {
        let out = self.command(&[&["grant"], extra].concat());
        assert!(out.status.success(), "{}", show(&out));
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// SIGKILL: a relay that cannot clean up.
    pub fn kill(&self) {
        self.handle.kill().unwrap();
    }

    /// SIGTERM, then waits for a clean exit; the log.
    pub fn stop(self) -> String {
        let pid = self.handle.pids()[0].to_string();
        duct::cmd!("kill", "-TERM", &pid).run().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(out) = self.handle.try_wait().unwrap() {
                assert_eq!(out.status.code(), Some(0), "{}", self.log());
                return self.log();
            }
            assert!(Instant::now() < deadline, "the relay did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.handle.kill();
    }
}

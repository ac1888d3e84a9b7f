//! A neighbour on the simulated EC2 host: a namespace of the test's own beside the build's,
//! with an address of its own, for attacks that must not come from the build's address.

use std::io::{ErrorKind, Read as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use imds_harness::backend::netns::Namespace;

use crate::output::show;

fn ip(args: &[&str]) -> Output {
    duct::cmd("/usr/sbin/ip", args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap()
}

/// Idle connections held open by [`Neighbour::hold_idle`] until [`IdleSockets::stop`].
pub struct IdleSockets {
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl IdleSockets {
    /// How many times a socket was (re)opened after the first round.
    pub fn reopened(&self) -> usize {
        self.reopened.load(Ordering::Relaxed)
    }

    /// Closes them all; how many times one was reopened.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.reopened()
    }
}

impl Drop for IdleSockets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A namespace of the test's own beside the build's, attached to the EC2 host's namespace by a
/// veth pair (10.251.<n>.0/30) and routed through it: a neighbour with an address of its own.
/// Deleted (with its link) on drop.
pub struct Neighbour {
    /// Its namespace.
    pub ns: Namespace,
}

impl Neighbour {
    /// Attaches neighbour `n` (1..=250) to `host`.
    pub fn attach(host: &Namespace, n: u8) -> Neighbour {
        let name = format!("imdsh-nb{}-{n}", std::process::id());
        let (outer, inner) = (format!("imdsh-nbo{n}"), format!("imdsh-nbi{n}"));
        let neighbour = Neighbour {
            ns: Namespace { name: name.clone() },
        };
        let h = host.name();
        for args in [
            vec!["netns", "add", &name],
            vec![
                "-n", h, "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns",
                &name,
            ],
            vec![
                "-n",
                h,
                "addr",
                "add",
                &format!("10.251.{n}.1/30"),
                "dev",
                &outer,
            ],
            vec!["-n", h, "link", "set", &outer, "up"],
            vec![
                "-n",
                &name,
                "addr",
                "add",
                &format!("10.251.{n}.2/30"),
                "dev",
                &inner,
            ],
            vec!["-n", &name, "link", "set", &inner, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
            vec![
                "-n",
                &name,
                "route",
                "add",
                "default",
                "via",
                &format!("10.251.{n}.1"),
            ],
        ] {
            let out = ip(&args);
            assert!(out.status.success(), "ip {args:?}: {}", show(&out));
        }
        neighbour
    }

    /// Holds `count` connections to `addr` open and idle, reopening each as soon as it is
    /// closed, until [`IdleSockets::stop`].
    pub fn hold_idle(&self, addr: SocketAddr, count: usize) -> IdleSockets {
        let stop = Arc::new(AtomicBool::new(false));
        let reopened = Arc::new(AtomicUsize::new(0));
        let ns = self.ns.clone();
        let (stopped, counter) = (stop.clone(), reopened.clone());
        let thread = std::thread::spawn(move || {
            ns.run_in(|| {
                let open = || {
                    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
                    s.set_nonblocking(true).ok()?;
                    Some(s)
                };
                let mut sockets: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
                let mut first_round = true;
                let mut buf = [0u8; 64];
                while !stopped.load(Ordering::Relaxed) {
                    for slot in &mut sockets {
                        if stopped.load(Ordering::Relaxed) {
                            break;
                        }
                        let closed = match slot {
                            Some(sock) => match sock.read(&mut buf) {
                                Ok(_) => true,
                                Err(e) => e.kind() != ErrorKind::WouldBlock,
                            },
                            None => true,
                        };
                        if closed {
                            *slot = open();
                            if !first_round {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    first_round = false;
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .unwrap();
        });
        IdleSockets {
            stop,
            reopened,
            thread: Some(thread),
        }
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", self.ns.name()]);
    }
}

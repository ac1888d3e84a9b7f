//! The mock against a reference server, in the same run: Debian's `wrk` drives the
//! release mock and an nginx serving the same bodies, alternately, so that whatever
//! else the machine is doing weighs on both and the ratio mock/nginx of each pair of
//! runs says how the mock compares, next to its absolute figures.
//!
//! Two cases:
//! - IMDS credential GETs with an IMDSv2 token (got first with a real `PUT`): the
//!   mock closes every connection, as IMDS does; nginx serves the same credentials
//!   document from a file with `keepalive_timeout 0` (`Connection: close`).
//! - STS `GetCallerIdentity`, a SigV4-signed POST over kept-alive connections: it is
//!   signed once before each pair of runs (with the credentials the mock's IMDS
//!   handed out) and replayed by wrk; the mock verifies every replay, which it
//!   accepts within the signature's 15 minutes, as STS does. nginx answers the same
//!   XML body (`return 200`) over kept-alive connections.
//!
//! `cargo bench -p imds-mock --bench mock [-- SECONDS PAIRS]`: PAIRS pairs of runs
//! (mock, nginx, mock, nginx, ...) of SECONDS each per case; defaults 4 and 5,
//! at most 60 and 20. wrk: 2 threads, 64 connections. Both servers get one worker per
//! core (the mock's Tokio runtime has one thread per core; nginx `worker_processes` =
//! `nproc`), and share the cores with wrk.
//!
//! Root only: the process moves itself into a network namespace of its own before it
//! starts anything, so every packet stays on that namespace's loopback; the namespace
//! has no name and vanishes with the last process in it. nginx and wrk are its children
//! (in process groups of their own, killed if it dies); they, and the temporary
//! directory (`imdsh-bench-*`) holding nginx's configuration, are removed on success,
//! on failure and on SIGINT, SIGTERM or SIGHUP.

#![allow(
    unsafe_code,
    reason = "the benchmark's own namespace (unshare), geteuid, sysconf and getrusage"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, ensure, Context, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use imds_mock::{Listeners, MockAws, MockConfig};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const THREADS: u32 = 2;
const CONNECTIONS: u32 = 64;
const DEFAULT_SECONDS: u64 = 4;
const DEFAULT_PAIRS: usize = 5;
const MAX_SECONDS: u64 = 60;
const MAX_PAIRS: usize = 20;
const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// Marks the line of wrk's output that the `done` hook writes.
const MARKER: &str = "IMDSH_WRK ";

// ---------------------------------------------------------------------------------
// Clean-up: what this run has started, removed on every way out.

struct Leftovers {
    nginx: Option<Pid>,
    wrk: Option<Pid>,
    dir: Option<PathBuf>,
}

static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    nginx: None,
    wrk: None,
    dir: None,
});

fn leftovers() -> std::sync::MutexGuard<'static, Leftovers> {
    LEFTOVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stops nginx: SIGTERM (its fast shutdown, which stops the workers first), then
/// SIGKILL to its whole process group if it has not exited within 3 s.
fn stop_nginx(master: Pid) {
    let _ = kill(master, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match waitpid(master, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break,
        }
    }
    // Its process group is its own (and its workers'): nothing else is in it.
    let _ = kill(Pid::from_raw(-master.as_raw()), Signal::SIGKILL);
    let _ = waitpid(master, Some(WaitPidFlag::WNOHANG));
}

/// Removes whatever is still registered. Safe to call more than once, from any thread.
fn clean_up() {
    let mut left = leftovers();
    if let Some(wrk) = left.wrk.take() {
        // Not reaped here: the main thread may be waiting for it; the process exits next.
        let _ = kill(Pid::from_raw(-wrk.as_raw()), Signal::SIGKILL);
    }
    if let Some(nginx) = left.nginx.take() {
        stop_nginx(nginx);
    }
    if let Some(dir) = left.dir.take() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (so in every thread started after
/// it) and returns them; [`watch_signals`] then takes them synchronously.
fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block()
        .context("blocking SIGINT, SIGTERM and SIGHUP")?;
    Ok(set)
}

fn watch_signals(set: SigSet) {
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            eprintln!("\n{signal}: stopping wrk and nginx, removing the temporary directory");
            clean_up();
            std::process::exit(128 + signal as i32);
        }
    });
}

/// Children die with this process (the thread that spawns them is the main thread,
/// which lives as long as the process), and get process groups of their own, so a
/// terminal's Ctrl-C reaches only this process, which stops them itself.
fn as_child(command: &mut Command, on_parent_death: Signal) -> &mut Command {
    let signal = on_parent_death as libc::c_int;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.process_group(0)
}

// ---------------------------------------------------------------------------------
// The private network namespace.

fn isolate_network() -> Result<()> {
    ensure!(
        // SAFETY: geteuid cannot fail and touches no memory.
        unsafe { libc::geteuid() } == 0,
        "the benchmark needs root: it runs in a network namespace of its own, never in this one"
    );
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("making a private network namespace (unshare CLONE_NEWNET)")?;
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running `ip` (Debian package iproute2)")?;
    ensure!(
        up.success(),
        "bringing up loopback in the private namespace"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// One HTTP exchange, checked with a real parser, for the checks before the runs.

struct Exchange {
    status: u16,
    /// Head and body: what wrk reads per response.
    wire_len: usize,
    body: Vec<u8>,
}

fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Exchange> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut chunk)
            .with_context(|| format!("reading from {addr}"))?;
        ensure!(
            n > 0,
            "{addr} closed the connection before a whole response"
        );
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(&buf)? else {
            continue;
        };
        let length: usize = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .ok_or_else(|| anyhow!("{addr} answered without a Content-Length"))?;
        let status = response.code.unwrap_or_default();
        if buf.len() >= head + length {
            return Ok(Exchange {
                status,
                wire_len: head + length,
                body: buf[head..head + length].to_vec(),
            });
        }
    }
}

fn expect_ok(what: &str, exchange: Exchange) -> Result<Exchange> {
    ensure!(
        exchange.status == 200,
        "{what}: status {}, not 200: {}",
        exchange.status,
        String::from_utf8_lossy(&exchange.body)
    );
    Ok(exchange)
}

// ---------------------------------------------------------------------------------
// The STS request, signed once and replayed.

struct SignedRequest {
    /// Header names and values, `host` included.
    headers: Vec<(String, String)>,
}

impl SignedRequest {
    fn new(addr: SocketAddr, creds: &Credentials) -> Result<SignedRequest> {
        let host = addr.to_string();
        let mut request = http::Request::post("/")
            .header("host", &host)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(())?;
        let identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sts")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let headers = [
            ("host", host.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let signable = SignableRequest::new(
            "POST",
            format!("http://{host}/"),
            headers.into_iter(),
            SignableBody::Bytes(STS_BODY.as_bytes()),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(&mut request);
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| Ok((name.as_str().to_string(), value.to_str()?.to_string())))
            .collect::<Result<_>>()?;
        Ok(SignedRequest { headers })
    }

    fn to_http(&self, addr: SocketAddr) -> Vec<u8> {
        let mut text = "POST / HTTP/1.1\r\n".to_string();
        for (name, value) in &self.headers {
            let value = if name == "host" {
                addr.to_string()
            } else {
                value.clone()
            };
            text += &format!("{name}: {value}\r\n");
        }
        text += &format!("content-length: {}\r\n\r\n{STS_BODY}", STS_BODY.len());
        text.into_bytes()
    }

    /// wrk's request: the same method, headers and body for every replay.
    fn to_lua(&self) -> String {
        let mut lua = format!(
            "wrk.method = \"POST\"\nwrk.body = {}\n",
            lua_string(STS_BODY)
        );
        for (name, value) in &self.headers {
            // wrk adds `Host` (and `Content-Length`) itself unless the script sets them.
            let name = if name == "host" { "Host" } else { name };
            lua += &format!(
                "wrk.headers[{}] = {}\n",
                lua_string(name),
                lua_string(value)
            );
        }
        lua
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out += &format!("\\{b:03}"),
        }
    }
    out.push('"');
    out
}

/// The `done` hook: wrk's summary and latency percentiles (µs) as one JSON line.
const DONE_HOOK: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'IMDSH_WRK {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,' ..
    '"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#;

// ---------------------------------------------------------------------------------
// nginx.

struct Nginx {
    master: Pid,
    stderr: PathBuf,
    error_log: PathBuf,
}

/// What nginx serves: the same bodies as the mock, on two more loopback ports.
struct NginxSite<'a> {
    imds_port: u16,
    sts_port: u16,
    credentials_path: &'a str,
    credentials: &'a [u8],
    sts_xml: &'a str,
    workers: usize,
}

fn start_nginx(dir: &Path, site: &NginxSite) -> Result<Nginx> {
    let credentials_file = dir.join("credentials.json");
    std::fs::write(&credentials_file, site.credentials)?;
    // The XML goes into the configuration as a single-quoted string.
    ensure!(
        !site.sts_xml.contains(['\'', '\\', '$']),
        "the STS body has characters nginx would interpret"
    );
    ensure!(
        site.credentials_path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.+=,@".contains(&b)),
        "unexpected characters in the credentials path {}",
        site.credentials_path
    );
    let d = dir.display();
    let config = format!(
        r"# Generated by mock/benches/mock.rs; removed with its directory.
daemon off;
master_process on;
worker_processes {workers};
# Root already, and the directory is root's alone (0700).
user root root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server_tokens off;
  etag off;
  tcp_nodelay on;
  sendfile on;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;

  # IMDS: one request per connection, as the mock (and IMDS) close every one.
  server {{
    listen 127.0.0.1:{imds_port} backlog=4096;
    keepalive_timeout 0;
    location = {path} {{
      alias {d}/credentials.json;
      default_type text/plain;
    }}
  }}

  # STS: kept-alive connections, as the mock keeps them (no request limit either).
  server {{
    listen 127.0.0.1:{sts_port} backlog=4096;
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
    location = / {{
      default_type text/xml;
      return 200 '{xml}';
    }}
  }}
}}
",
        workers = site.workers,
        imds_port = site.imds_port,
        sts_port = site.sts_port,
        path = site.credentials_path,
        xml = site.sts_xml,
    );
    let config_file = dir.join("nginx.conf");
    std::fs::write(&config_file, config)?;
    let stderr = dir.join("nginx.stderr");
    let error_log = dir.join("error.log");
    let mut command = Command::new(nginx_binary()?);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&config_file)
        // Before the configuration is read, nginx logs to its compiled-in path.
        .arg("-e")
        .arg(&error_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr)?);
    let child = as_child(&mut command, Signal::SIGTERM)
        .spawn()
        .context("starting nginx")?;
    let master = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    // From here on the pid is managed by hand (waitpid in stop_nginx), not by `child`.
    drop(child);
    leftovers().nginx = Some(master);
    let nginx = Nginx {
        master,
        stderr,
        error_log,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(status) = waitpid(master, Some(WaitPidFlag::WNOHANG)) {
            if status != WaitStatus::StillAlive {
                leftovers().nginx = None;
                bail!("nginx exited ({status:?}): {}", nginx.log_tail());
            }
        }
        let ready = [site.imds_port, site.sts_port].iter().all(|port| {
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], *port)),
                Duration::from_millis(100),
            )
            .is_ok()
        });
        if ready && nginx.workers().len() == site.workers {
            return Ok(nginx);
        }
        ensure!(
            Instant::now() < deadline,
            "nginx did not listen within 5 s: {}",
            nginx.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Nginx {
    fn log_tail(&self) -> String {
        let mut text = String::new();
        for file in [&self.stderr, &self.error_log] {
            text += &std::fs::read_to_string(file).unwrap_or_default();
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn workers(&self) -> Vec<i32> {
        let m = self.master;
        std::fs::read_to_string(format!("/proc/{m}/task/{m}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// User and system CPU time of the master and its workers so far.
    fn cpu_time(&self) -> Duration {
        // SAFETY: sysconf only reads a constant.
        let ticks = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
            t if t > 0 => t as u64,
            _ => 100,
        };
        std::iter::once(self.master.as_raw())
            .chain(self.workers())
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // After the command name in parentheses: field 3 onwards; utime and
                // stime are fields 14 and 15.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
                let total = field(14).unwrap_or(0) + field(15).unwrap_or(0);
                Duration::from_micros(total * 1_000_000 / ticks)
            })
            .sum()
    }
}

fn nginx_binary() -> Result<PathBuf> {
    find_program("nginx", &["/usr/sbin/nginx"])
}

fn find_program(name: &str, fallbacks: &[&str]) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "`{name}` not found: the benchmark needs Debian's nginx and wrk \
                 (`make bench` installs them: apt-get install nginx wrk)"
            )
        })
}

// ---------------------------------------------------------------------------------
// wrk.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Mock,
    Nginx,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Mock => "mock",
            Server::Nginx => "nginx",
        }
    }
}

#[derive(Clone, Copy)]
struct Sample {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// The server's CPU time (user + system) per request.
    cpu: Duration,
    /// wrk's.
    client_cpu: Duration,
    socket_errors: u64,
}

/// What one wrk run is: the URL, the extra arguments and the script.
struct Load<'a> {
    url: String,
    headers: &'a [String],
    script: &'a Path,
    /// What each response is on the wire (head and body), as checked before.
    wire_len: usize,
}

fn run_wrk(seconds: u64, load: &Load, server_cpu: &dyn Fn() -> Duration) -> Result<Sample> {
    let mut command = Command::new(find_program("wrk", &[])?);
    command
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "2s"])
        .arg("-s")
        .arg(load.script);
    for header in load.headers {
        command.arg("-H").arg(header);
    }
    command
        .arg(&load.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu_before = server_cpu();
    let client_before = rusage_cpu_time(libc::RUSAGE_CHILDREN);
    let child = as_child(&mut command, Signal::SIGKILL)
        .spawn()
        .context("starting wrk")?;
    leftovers().wrk = Some(Pid::from_raw(
        i32::try_from(child.id()).expect("a pid fits in i32"),
    ));
    let output = child.wait_with_output();
    leftovers().wrk = None;
    let output = output.context("waiting for wrk")?;
    let cpu = server_cpu().checked_sub(cpu_before).unwrap();
    // wrk has been reaped: its time is in this process's children's.
    let client_cpu = rusage_cpu_time(libc::RUSAGE_CHILDREN)
        .checked_sub(client_before)
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .ok_or_else(|| anyhow!("no summary in wrk's output: {stdout}"))?;
    let json: serde_json::Value = serde_json::from_str(line)?;
    let number = |key: &str| {
        json[key]
            .as_f64()
            .ok_or_else(|| anyhow!("wrk's summary has no {key}: {line}"))
    };
    let requests = number("requests")?;
    ensure!(requests > 0.0, "wrk completed no request: {stdout}");
    // A refused request (401, 404, ...) answers fast: it must not count as served.
    ensure!(
        number("status")? == 0.0,
        "{} responses were not 2xx or 3xx",
        number("status")?
    );
    // Every response is the one checked before: the bytes wrk read add up (give or take
    // the responses cut short when the run ended).
    let per_response = number("bytes")? / requests;
    ensure!(
        (per_response - load.wire_len as f64).abs() <= load.wire_len as f64 * 0.01,
        "wrk read {per_response:.0} bytes per response, expected {}",
        load.wire_len
    );
    let socket_errors = ["connect", "read", "write", "timeout"]
        .iter()
        .map(|k| number(k))
        .sum::<Result<f64>>()?;
    ensure!(
        socket_errors <= requests * 0.001,
        "{socket_errors} socket errors or timeouts for {requests} requests: {line}"
    );
    let micros = |v: f64| Duration::from_nanos((v * 1e3) as u64);
    Ok(Sample {
        per_second: requests / (number("duration_us")? / 1e6),
        p50: micros(number("p50_us")?),
        p99: micros(number("p99_us")?),
        cpu: cpu / requests as u32,
        client_cpu: client_cpu / requests as u32,
        socket_errors: socket_errors as u64,
    })
}

/// This process's CPU time (user + system): the mock's, as wrk is a separate process.
fn own_cpu_time() -> Duration {
    rusage_cpu_time(libc::RUSAGE_SELF)
}

fn rusage_cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct it is given; all-zero is a valid rusage.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &raw mut usage);
        usage
    };
    let time =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    time(usage.ru_utime) + time(usage.ru_stime)
}

// ---------------------------------------------------------------------------------
// Reporting.

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

fn thousands(n: f64) -> String {
    let digits = format!("{n:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn print_sample(case: &str, pair: usize, server: Server, s: &Sample, ratio: Option<f64>) {
    let ratio = ratio.map_or(String::new(), |r| format!("  mock/nginx {r:.2}"));
    println!(
        "{case:<22} {pair:>2} {:<5} {:>8}/s  p50 {:>8}  p99 {:>8}  CPU/request {:>3} µs + wrk {:>3} µs  socket errors {}{ratio}",
        server.name(),
        thousands(s.per_second),
        ms(s.p50),
        ms(s.p99),
        s.cpu.as_micros(),
        s.client_cpu.as_micros(),
        s.socket_errors,
    );
}

struct Summary {
    case: &'static str,
    runs: Vec<(Sample, Sample)>,
}

impl Summary {
    fn of(&self, server: Server) -> (f64, Duration, Duration, Duration, Duration) {
        let pick = |pair: &(Sample, Sample)| match server {
            Server::Mock => pair.0,
            Server::Nginx => pair.1,
        };
        let med =
            |f: &dyn Fn(&Sample) -> f64| median(self.runs.iter().map(|p| f(&pick(p))).collect());
        (
            med(&|s| s.per_second),
            Duration::from_secs_f64(med(&|s| s.p50.as_secs_f64())),
            Duration::from_secs_f64(med(&|s| s.p99.as_secs_f64())),
            Duration::from_secs_f64(med(&|s| s.cpu.as_secs_f64())),
            Duration::from_secs_f64(med(&|s| s.client_cpu.as_secs_f64())),
        )
    }

    fn ratios(&self) -> Vec<f64> {
        self.runs
            .iter()
            .map(|(m, n)| m.per_second / n.per_second)
            .collect()
    }
}

fn print_summaries(summaries: &[Summary]) {
    println!();
    println!(
        "Medians of the {} runs of each server (ratio: requests/s of the mock over nginx's in the run after it):",
        summaries.first().map_or(0, |s| s.runs.len())
    );
    println!("| case | server | requests/s | p50 | p99 | CPU per request: server + wrk | mock/nginx, each pair | median |");
    println!("|---|---|---|---|---|---|---|---|");
    for s in summaries {
        let ratios = s.ratios();
        let per_run: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        for server in [Server::Mock, Server::Nginx] {
            let (rps, p50, p99, cpu, client_cpu) = s.of(server);
            let (per_run, med) = match server {
                Server::Mock => (
                    per_run.join(", "),
                    format!("**{:.2}**", median(ratios.clone())),
                ),
                Server::Nginx => (String::new(), String::new()),
            };
            println!(
                "| {} | {} | {}/s | {} | {} | {} + {} µs | {per_run} | {med} |",
                s.case,
                server.name(),
                thousands(rps),
                ms(p50),
                ms(p99),
                cpu.as_micros(),
                client_cpu.as_micros(),
            );
        }
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({model}), kernel {}", kernel.trim())
}

/// The 1-minute load average: how busy the shared machine was around the runs.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn version_line(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr).to_string()
                + &String::from_utf8_lossy(&o.stdout);
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------

fn parse_args() -> Result<(u64, usize)> {
    // `cargo bench` passes `--bench`; flags are not ours.
    let numbers: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    ensure!(
        numbers.len() <= 2,
        "usage: mock [SECONDS [PAIRS]] (got {numbers:?})"
    );
    let seconds = match numbers.first() {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| (1..=MAX_SECONDS).contains(s))
            .ok_or_else(|| anyhow!("SECONDS must be 1 to {MAX_SECONDS}, not {s:?}"))?,
        None => DEFAULT_SECONDS,
    };
    let pairs = match numbers.get(1) {
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| (1..=MAX_PAIRS).contains(p))
            .ok_or_else(|| anyhow!("PAIRS must be 1 to {MAX_PAIRS}, not {p:?}"))?,
        None => DEFAULT_PAIRS,
    };
    Ok((seconds, pairs))
}

fn free_port() -> Result<u16> {
    // In the private namespace nothing else binds between this and nginx's bind.
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

fn run() -> Result<()> {
    let (seconds, pairs) = parse_args()?;
    let signals = block_signals()?;
    // Before any other thread exists: they all inherit the namespace.
    isolate_network()?;
    watch_signals(signals);
    let nginx_bin = nginx_binary()?;
    let wrk_bin = find_program("wrk", &[])?;

    let dir = tempfile::Builder::new()
        .prefix("imdsh-bench-")
        .tempdir()
        .context("making the temporary directory")?
        .keep();
    leftovers().dir = Some(dir.clone());

    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    let mock = {
        let _in_runtime = runtime.enter();
        MockAws::start(MockConfig::default(), Listeners::loopback()?)?
    };
    let host_port = |url: &str| -> Result<SocketAddr> {
        Ok(url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()?)
    };
    let imds = host_port(&mock.endpoints().imds)?;
    let sts = host_port(&mock.endpoints().sts)?;

    // As a client does: a token with a PUT, then the credentials with it.
    let token = expect_ok(
        "the token PUT",
        exchange(
            imds,
            format!(
                "PUT /latest/api/token HTTP/1.1\r\nHost: {imds}\r\n\
                 X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )?,
    )?;
    let token = String::from_utf8(token.body)?;
    let role = &mock.identity().role;
    let credentials_path = format!("/latest/meta-data/iam/security-credentials/{role}");
    let token_header = format!("X-aws-ec2-metadata-token: {token}");
    let imds_get = |addr: SocketAddr| {
        format!("GET {credentials_path} HTTP/1.1\r\nHost: {addr}\r\n{token_header}\r\n\r\n")
    };
    let from_mock = expect_ok(
        "the credentials GET",
        exchange(imds, imds_get(imds).as_bytes())?,
    )?;
    let document: serde_json::Value = serde_json::from_slice(&from_mock.body)?;
    let field = |key: &str| {
        document[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the credentials document has no {key}"))
    };
    let creds = Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        Some(field("Token")?),
        None,
        "bench",
    );
    let signed = SignedRequest::new(sts, &creds)?;
    let from_sts = expect_ok("GetCallerIdentity", exchange(sts, &signed.to_http(sts))?)?;
    let sts_xml = String::from_utf8(from_sts.body.clone())?;

    let nginx_imds = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let nginx_sts = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let nginx = start_nginx(
        &dir,
        &NginxSite {
            imds_port: nginx_imds.port(),
            sts_port: nginx_sts.port(),
            credentials_path: &credentials_path,
            credentials: &from_mock.body,
            sts_xml: &sts_xml,
            workers: cores,
        },
    )?;
    let from_nginx = expect_ok(
        "nginx's credentials GET",
        exchange(nginx_imds, imds_get(nginx_imds).as_bytes())?,
    )?;
    ensure!(
        from_nginx.body == from_mock.body,
        "nginx serves another credentials document"
    );
    let from_nginx_sts = expect_ok(
        "nginx's STS answer",
        exchange(nginx_sts, &signed.to_http(nginx_sts))?,
    )?;
    ensure!(
        from_nginx_sts.body == from_sts.body,
        "nginx serves another STS body"
    );

    println!(
        "{}; a private network namespace, loopback only; wrk {THREADS} threads, {CONNECTIONS} connections, \
         {pairs} pairs of {seconds} s runs per case; mock: {cores} Tokio worker threads, nginx: \
         worker_processes {cores}",
        machine()
    );
    println!(
        "{}; {}",
        version_line(&nginx_bin, "-v"),
        version_line(&wrk_bin, "-v")
    );
    println!(
        "responses on the wire: IMDS mock {} bytes, nginx {}; STS mock {}, nginx {} (bodies identical: {} and {} bytes)",
        from_mock.wire_len,
        from_nginx.wire_len,
        from_sts.wire_len,
        from_nginx_sts.wire_len,
        from_mock.body.len(),
        from_sts.body.len()
    );

    let load_before = load_average();
    let imds_script = dir.join("imds.lua");
    std::fs::write(&imds_script, DONE_HOOK)?;
    let sts_script = dir.join("sts.lua");
    let token_headers = [token_header.clone()];
    let mock_cpu = own_cpu_time;
    let nginx_cpu = || nginx.cpu_time();

    let mut summaries = Vec::new();
    for case in ["IMDS credential GET", "STS GetCallerIdentity"] {
        let mut runs = Vec::new();
        for pair in 1..=pairs {
            let sample = |server: Server| -> Result<Sample> {
                let (addr, wire_len) = match (case.starts_with("IMDS"), server) {
                    (true, Server::Mock) => (imds, from_mock.wire_len),
                    (true, Server::Nginx) => (nginx_imds, from_nginx.wire_len),
                    (false, Server::Mock) => (sts, from_sts.wire_len),
                    (false, Server::Nginx) => (nginx_sts, from_nginx_sts.wire_len),
                };
                let load = if case.starts_with("IMDS") {
                    Load {
                        url: format!("http://{addr}{credentials_path}"),
                        headers: &token_headers,
                        script: &imds_script,
                        wire_len,
                    }
                } else {
                    if server == Server::Mock {
                        // Signed afresh for each pair: a replay is accepted for 15 minutes.
                        let signed = SignedRequest::new(sts, &creds)?;
                        std::fs::write(&sts_script, signed.to_lua() + DONE_HOOK)?;
                    }
                    Load {
                        url: format!("http://{addr}/"),
                        headers: &[],
                        script: &sts_script,
                        wire_len,
                    }
                };
                let cpu: &dyn Fn() -> Duration = match server {
                    Server::Mock => &mock_cpu,
                    Server::Nginx => &nginx_cpu,
                };
                run_wrk(seconds, &load, cpu)
                    .with_context(|| format!("{case}, pair {pair}, {}", server.name()))
            };
            let m = sample(Server::Mock)?;
            print_sample(case, pair, Server::Mock, &m, None);
            let n = sample(Server::Nginx)?;
            print_sample(
                case,
                pair,
                Server::Nginx,
                &n,
                Some(m.per_second / n.per_second),
            );
            runs.push((m, n));
        }
        summaries.push(Summary { case, runs });
    }
    print_summaries(&summaries);
    println!(
        "\n1-minute load average: {load_before} before the runs, {} after (the runs themselves add up to 4: two wrk threads, two server workers)",
        load_average()
    );

    let master = leftovers().nginx.take();
    if let Some(master) = master {
        stop_nginx(master);
    }
    drop(mock);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

fn main() -> ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        clean_up();
        default_hook(info);
    }));
    let result = run();
    clean_up();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

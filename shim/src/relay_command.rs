//! `imds-shim relay` and its subcommands `grant`, `revoke` and `list` (the binary's side: the
//! arguments, the runtime, the signals; the relay itself is `imds_shim::relay`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use imds_shim::probe::Place;
use imds_shim::relay::admission::Caps;
use imds_shim::relay::control::{self, ControlGroup, ControlReply, ControlRequest};
use imds_shim::relay::grants::{self, Grants};
use imds_shim::relay::limit::RateLimit;
use imds_shim::relay::metrics::Metrics;
use imds_shim::relay::role::{self, RoleCache, RoleSource};
use imds_shim::relay::scope::{self, AssumedRole, Scope, ScopeError};
use imds_shim::relay::session::Assumer;
use imds_shim::relay::token_file::{self, Owner};
use imds_shim::relay::{self, address, log, privilege, state, Relay};

/// How long the runtime of the first IMDS fetch may take to stop.
const FIRST_FETCH_STOP: Duration = Duration::from_secs(1);
/// How long the relay waits for its tasks after a signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Worker threads of the relay's runtime.
const WORKERS: usize = 2;
/// The largest `--policy` file read (STS takes 2,048 characters).
const MAX_POLICY_FILE: u64 = 64 * 1024;

/// A file removed when this is dropped: the control socket, on every way out of `serve`.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RelayArgs {
    #[command(subcommand)]
    action: Option<Action>,

    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Args)]
struct ControlArg {
    /// The relay's control socket
    #[arg(long, value_name = "PATH", default_value = relay::DEFAULT_CONTROL)]
    control: PathBuf,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The address and port to serve: 169.254.170.2, 169.254.170.23, [fd00:ec2::23] or a loopback address, the ones SDKs accept over http (the address is added to a link of its own unless it is a loopback address); repeat it to serve several, the first is the one `grant` prints
    #[arg(long, value_name = "IP:PORT", default_value = relay::DEFAULT_LISTEN, value_parser = address::parse_listen)]
    listen: Vec<SocketAddr>,

    /// The link the relay creates to hold the address, marks as its own and removes on exit (with one --listen only) [default: imdsh-relay0 for 169.254.170.2, one name per address]
    #[arg(long, value_name = "NAME")]
    link: Option<String>,

    /// The STS endpoint scoped grants' sessions are assumed at [default: the regional endpoint of the instance's region]
    #[arg(long, value_name = "URL")]
    sts_endpoint: Option<String>,

    /// The region of STS [default: AWS_REGION, else the instance's region from IMDS]
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    #[command(flatten)]
    control: ControlArg,

    /// Let the members of GROUP use the control socket (grant, revoke, list) besides root
    #[arg(long, value_name = "GROUP")]
    control_group: Option<String>,

    /// Keep grants in FILE (mode 0600, written atomically) so that they survive a restart
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    /// The most connections kept at once; when full, the oldest idle one is closed for a new one
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections: u32,

    /// The most connections kept at once from one client address; past it, the client's oldest idle one is closed
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections_per_client: u32,

    /// Requests per second allowed per grant
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    rate: f64,

    /// Requests per grant allowed in a burst above --rate
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,

    /// IMDS connect and read timeout in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    timeout_ms: u64,

    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g. 127.0.0.1:9464: grants, requests by outcome, upstream calls, credentials' age, latency; never a secret
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<SocketAddr>,
}

/// What a grant serves.
#[derive(Debug, Args)]
struct ScopeArgs {
    /// Serve a session of this role, assumed by the relay with the instance role's credentials (STS AssumeRole)
    #[arg(long, value_name = "ARN")]
    role_arn: Option<String>,

    /// Serve the instance role itself (it must be spelled out)
    #[arg(long)]
    instance_role: bool,

    /// A session policy (JSON file) that narrows the session further
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,

    /// A managed session policy (repeatable)
    #[arg(long, value_name = "ARN")]
    policy_arn: Vec<String>,

    /// The session name CloudTrail shows (2 to 64 of letters, digits and +=,.@_-) [default: from --label]
    #[arg(long, value_name = "NAME")]
    session_name: Option<String>,

    /// A session tag KEY=VALUE (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = scope::parse_tag)]
    tag: Vec<(String, String)>,

    /// The session's lifetime, 15m to 1h (STS caps role chaining at 1 h); never longer than the grant by more than 15 minutes
    #[arg(long, value_name = "DURATION", value_parser = grants::parse_ttl)]
    duration: Option<Duration>,
}

impl ScopeArgs {
    /// The scope asked for, checked as the relay will check it.
    fn scope(&self) -> anyhow::Result<Scope> {
        let session_options = [
            ("--policy", self.policy.is_some()),
            ("--policy-arn", !self.policy_arn.is_empty()),
            ("--session-name", self.session_name.is_some()),
            ("--tag", !self.tag.is_empty()),
            ("--duration", self.duration.is_some()),
        ];
        let Some(role_arn) = &self.role_arn else {
            if !self.instance_role {
                return Err(ScopeError::Unnamed.into());
            }
            if let Some((name, _)) = session_options.iter().find(|(_, given)| *given) {
                return Err(ScopeError::NotForInstanceRole(name).into());
            }
            return Ok(Scope::InstanceRole);
        };
        if self.instance_role {
            return Err(ScopeError::Both.into());
        }
        let policy = match &self.policy {
            Some(path) => Some(read_policy(path)?),
            None => None,
        };
        let scope = Scope::Assumed(Box::new(AssumedRole {
            role_arn: role_arn.clone(),
            session_name: self.session_name.clone().unwrap_or_default(),
            policy,
            policy_arns: self.policy_arn.clone(),
            tags: self.tag.clone(),
            duration_secs: self.duration.unwrap_or(scope::MAX_SESSION).as_secs(),
        }));
        scope.validate(true)?;
        Ok(scope)
    }
}

/// The session policy in `path` (at most 64 KiB read; STS takes 2,048 characters).
fn read_policy(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_FILE).read_to_string(&mut text))
        .with_context(|| format!("cannot read --policy {}", path.display()))?;
    Ok(text)
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Give one build access: print the environment it needs (NAME=value lines)
    Grant {
        /// How long the grant lasts (90s, 30m, 2h, 1d; at most 7d)
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = grants::parse_ttl)]
        ttl: Duration,

        #[command(flatten)]
        scope: Box<ScopeArgs>,

        /// Write the authorization token to PATH (mode 0600, owned by --owner) and print AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE instead of the token
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,

        /// The user the token file belongs to [default: the caller]
        #[arg(long, value_name = "USER", requires = "token_file")]
        owner: Option<String>,

        /// A label for `relay list` and the relay's log
        #[arg(long, value_name = "TEXT", default_value = "")]
        label: String,

        /// Print `export NAME=value` lines, for `eval` in a shell
        #[arg(long)]
        export: bool,

        /// Write the lines to FILE (created with mode 0600; a symlink is not followed) instead
        /// of stdout, which a shell redirection would create readable by everyone
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,

        #[command(flatten)]
        control: ControlArg,
    },
    /// Revoke a grant: its builds get 403 from now on
    Revoke {
        /// The grant's id (from `relay grant` or `relay list`)
        id: String,

        #[command(flatten)]
        control: ControlArg,
    },
    /// List the grants
    List {
        /// One JSON array on stdout
        #[arg(long)]
        json: bool,

        #[command(flatten)]
        control: ControlArg,
    },
}

pub(crate) fn relay_command(args: RelayArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        None => serve(&args.serve),
        Some(action) => client(&action),
    }
}

fn client(action: &Action) -> anyhow::Result<ExitCode> {
    if let Action::List { json, control } = action {
        return list(&control.control, *json);
    }
    let mut token_file = None;
    let (path, request) = match action {
        Action::Grant {
            ttl,
            label,
            control,
            scope,
            token_file: file,
            owner,
            ..
        } => {
            let scope = scope.scope()?;
            if let Some(file) = file {
                let owner = Owner::lookup(owner.as_deref())?;
                token_file = Some((token_file::check(file, &owner)?, owner));
            }
            (
                &control.control,
                ControlRequest::Grant {
                    ttl_secs: ttl.as_secs(),
                    label: label.clone(),
                    scope: Some(scope),
                },
            )
        }
        Action::Revoke { id, control } => {
            (&control.control, ControlRequest::Revoke { id: id.clone() })
        }
        Action::List { .. } => unreachable!("answered above"),
    };
    let rt = crate::runtime::runtime()?;
    let reply = rt.block_on(control::call(path, &request))?;
    match (reply, action) {
        (ControlReply::Granted { grant, mut env }, Action::Grant { export, output, .. }) => {
            if let Some((file, owner)) = &token_file {
                let token = env.0.iter().find(|(k, _)| k == relay::ENV_AUTH_TOKEN);
                let written = match token {
                    Some((_, token)) => token_file::write(file, owner, token.expose()),
                    None => Err(std::io::Error::other("the relay gave no token")),
                };
                if let Err(e) = written {
                    let revoked = rt.block_on(control::call(
                        path,
                        &ControlRequest::Revoke {
                            id: grant.id.clone(),
                        },
                    ));
                    let undone = match revoked {
                        Ok(ControlReply::Revoked { .. }) => "it was revoked".to_owned(),
                        other => format!("revoking it failed too ({other:?}): revoke it by hand"),
                    };
                    bail!(
                        "cannot write the token to {}: {e}; grant {}: {undone}",
                        file.display(),
                        grant.id
                    );
                }
                env.0.retain(|(k, _)| k == relay::ENV_FULL_URI);
                env.0.push((
                    relay::ENV_AUTH_TOKEN_FILE.to_owned(),
                    grants::Secret::new(file.display().to_string()),
                ));
            }
            let prefix = if *export { "export " } else { "" };
            let mut lines = String::new();
            for (name, value) in &env.0 {
                lines.push_str(&format!("{prefix}{name}={}\n", value.expose()));
            }
            match output {
                Some(path) => write_secret_file(path, &lines)
                    .with_context(|| format!("cannot write the grant to {}", path.display()))?,
                None => print!("{lines}"),
            }
            let serves = match grant.role.as_str() {
                "instance role" => "the instance role".to_owned(),
                role => format!("role {role} as session {}", grant.session),
            };
            eprintln!(
                "imds-shim: grant {} ({:?}) until {}, {serves}; revoke it with `imds-shim relay \
                 revoke {}`",
                grant.id, grant.label, grant.expires, grant.id
            );
        }
        (ControlReply::Revoked { grant }, _) => {
            println!("revoked {} ({:?})", grant.id, grant.label);
        }
        (ControlReply::Error { message }, _) => bail!("the relay refused: {message}"),
        (other, _) => bail!("unexpected reply from the relay: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path`, readable by its owner only, without following a symlink.
fn write_secret_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // An existing file keeps its mode on open: narrow it before the secret is written.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// `relay list`: every page, as one table or one JSON array.
fn list(path: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let rt = crate::runtime::runtime()?;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        match rt.block_on(control::call(path, &ControlRequest::List { after }))? {
            ControlReply::Listed { grants, next } => {
                all.extend(grants);
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            ControlReply::Error { message } => bail!("the relay refused: {message}"),
            other => bail!("unexpected reply from the relay: {other:?}"),
        }
    }
    if json {
        println!("{}", serde_json::to_string(&all)?);
    } else {
        println!(
            "{:<16}  {:<7}  {:<20}  {:<16}  {:<24}  {:<20}  LABEL",
            "ID", "STATE", "EXPIRES", "ROLE", "SESSION", "CREDENTIALS EXPIRE"
        );
        for g in all {
            println!(
                "{:<16}  {:<7}  {:<20}  {:<16}  {:<24}  {:<20}  {}",
                g.id,
                g.state,
                g.expires,
                g.role,
                g.session,
                g.credentials_expire.as_deref().unwrap_or("-"),
                g.label
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number");
    }
    let rate = RateLimit {
        per_second: args.rate,
        burst: args.burst,
    };
    relay::logging::init();
    let caps = Caps {
        total: args.max_connections as usize,
        per_client: args.max_connections_per_client as usize,
    };
    let group = args
        .control_group
        .as_deref()
        .map(ControlGroup::lookup)
        .transpose()?;
    if args.link.is_some() && args.listen.len() > 1 {
        bail!("--link names the link of one --listen address; with several, each gets its own");
    }
    let listens = args.listen.clone();
    if let Some(twice) = listens
        .iter()
        .enumerate()
        .find_map(|(i, a)| listens[..i].contains(a).then_some(a))
    {
        bail!("--listen {twice} is given twice");
    }
    let links: Vec<String> = listens
        .iter()
        .map(|l| {
            args.link
                .clone()
                .unwrap_or_else(|| address::default_link(l.ip()))
        })
        .collect();
    let place = Place::from_env(|name| std::env::var(name).ok())?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let no_credentials = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "IMDS on this host gave no credentials ({e}): the relay serves the instance \
             role's credentials, so run it on the EC2 host itself (not in a container), on \
             an instance with an IAM role (instance profile) and its metadata endpoint enabled"
        )
    };
    let metrics = Arc::new(Metrics::new());
    let source = RoleSource::new(&place, timeout)
        .map_err(|e| no_credentials(&e))?
        .observed(metrics.clone());
    // The first fetch runs on a runtime of its own, stopped before the privileges are dropped:
    // capabilities are per thread, and the serving runtime's threads must start without them.
    let (first, region) = {
        let rt = crate::runtime::runtime()?;
        let first = rt.block_on(source.fetch());
        let region = match args.region.clone().or_else(|| place.region.clone()) {
            Some(region) => Ok(region),
            None if args.sts_endpoint.is_some() => Err("not needed".to_owned()),
            None => rt.block_on(source.region()).map_err(|e| e.to_string()),
        };
        rt.shutdown_timeout(FIRST_FETCH_STOP);
        (first.map_err(|e| no_credentials(&e))?, region)
    };
    let state = match &args.state {
        Some(path) => Some(state::open(path)?),
        None => None,
    };
    let restored = state.as_ref().map_or(0, |(_, records)| records.len());
    let records = state.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
    let control_listener = control::bind(&args.control.control, group.as_ref())?;
    let control_file = RemovedOnDrop(args.control.control.clone());
    control_listener.set_nonblocking(true)?;
    let mut owned = Vec::new();
    let mut listeners = Vec::new();
    for (listen, link) in listens.iter().zip(&links) {
        owned.push(address::claim(*listen, link)?);
        let listener =
            address::listen_tcp(*listen).with_context(|| format!("cannot listen on {listen}"))?;
        listener.set_nonblocking(true)?;
        listeners.push(listener);
    }
    let metrics_listener = match args.metrics {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot serve the metrics on {addr}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    privilege::keep_net_admin_only()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    rt.block_on(async {
        let listeners = listeners
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()?;
        let control_listener = tokio::net::UnixListener::from_std(control_listener)?;
        log(&format!(
            "the role's credentials: {} until {}",
            first.access_key_id,
            role::rfc3339(first.expiration)
        ));
        if let Err(why) = &region {
            log(&format!(
                "no region for STS ({why}): scoped grants need --region or --sts-endpoint"
            ));
        }
        let cache = Arc::new(RoleCache::with(first));
        let assumer = Arc::new(
            Assumer::new(cache.clone(), region, args.sts_endpoint.clone())
                .counted_in(metrics.clone()),
        );
        let relay = Arc::new(
            Relay::new(
                listens.clone(),
                Grants::restore(records, rate),
                cache.clone(),
                assumer,
                state,
            )?
            .with_metrics(metrics),
        );
        tokio::spawn(relay::logging::flush_forever(relay.refusals.clone()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let scrapes = match metrics_listener {
            Some(l) => {
                let l = tokio::net::TcpListener::from_std(l)?;
                log(&format!(
                    "metrics on http://{}{}",
                    l.local_addr()?,
                    relay::metrics::METRICS_PATH
                ));
                let counted = relay.clone();
                Some(tokio::spawn(relay::metrics::serve(
                    l,
                    relay.metrics.clone(),
                    move || counted.grants_active(),
                    stopped.clone(),
                )))
            }
            None => None,
        };
        let refresher = tokio::spawn(role::refresh_forever(cache, source, |line| log(&line)));
        let http = tokio::spawn(imds_shim::relay::server::serve_all(
            listeners,
            relay.clone(),
            caps,
            stopped.clone(),
        ));
        let ctl = tokio::spawn(control::serve(control_listener, relay, group, stopped));
        let places: Vec<String> = listens
            .iter()
            .zip(&owned)
            .map(|(listen, owned)| {
                let link = owned
                    .as_ref()
                    .map(|o| format!(" ({} on {} link {})", o.ip(), o.kind(), o.link()))
                    .unwrap_or_default();
                format!("{listen}{link}")
            })
            .collect();
        log(&format!(
            "serving on {}; control socket {}; {restored} grant(s) from the state file; \
             capabilities kept: CAP_NET_ADMIN only",
            places.join(", "),
            args.control.control.display()
        ));

        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        log(&format!("{name}: stopping"));
        let _ = stop.send(true);
        refresher.abort();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            let _ = http.await;
            let _ = ctl.await;
            if let Some(scrapes) = scrapes {
                let _ = scrapes.await;
            }
        })
        .await;
        drop(control_file);
        drop(owned);
        log("stopped; the address is released");
        Ok(ExitCode::SUCCESS)
    })
}

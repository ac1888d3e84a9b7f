//! `imds-shim`: find out, where a build runs, whether it gets the EC2 instance role's credentials.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use imds_shim::baseline::{self, Need};
use imds_shim::check::{self, Verdict};
use imds_shim::enforce::{self, EnforceOutcome};
use imds_shim::fleet::api::{self, FleetApi};
use imds_shim::fleet::audit::{self, AuditRequest};
use imds_shim::fleet::defaults;
use imds_shim::fleet::iac::{self, Dialect};
use imds_shim::fleet::launch_template::{self, TemplateRef};
use imds_shim::fleet::org_enforce::{self, OrgEnforceRequest};
use imds_shim::fleet::org_report::{OrgSummary, Record};
use imds_shim::fleet::org_writer;
use imds_shim::fleet::organization::{self, AccountIds, OrgAuditError, OrgAuditRequest, Regions};
use imds_shim::probe::{self, render, Place, ProbeOptions, Steps};
use imds_shim::run::{self, classify, diagnosis};
use imds_shim::{config, manual};
use imds_vocab::{HopLimit, Topology};
use runtime::runtime;

mod fence_command;
mod relay_command;
mod runtime;
mod whoami_command;

/// Exit code when a requested step failed.
const EXIT_FAILED: u8 = 1;
/// Exit code for usage and configuration errors.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "imds-shim",
    version,
    about = "Find out whether a build step gets the EC2 instance role's credentials, and why not",
    long_about = "Find out whether the place this runs in (the host, a container, a BuildKit or \
                  Earthly RUN step) gets the EC2 instance role's credentials from the instance \
                  metadata service (IMDSv2), and if not, why not: most often the instance's \
                  metadata hop limit (HttpPutResponseHopLimit) is lower than the network depth \
                  of the build."
)]
struct Cli {
    /// Read the subcommand's options from FILE first (a TOML table per subcommand, e.g. [relay]; options given here win); must come first
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe IMDS from here: the hop limit this place needs, the token, the credentials, the identity
    #[command(
        long_about = "Probe IMDS from the place this runs in, in four steps, each timed:\n\
                      \n  ttl          the hop limit this place needs: the smallest IP TTL with which a\n               \
                      TCP connect reaches the IMDS host (no request is sent)\n  \
                      token        an IMDSv2 session token (PUT /latest/api/token), the instance id and region\n  \
                      credentials  the role's credentials through aws-config's IMDS credentials provider\n  \
                      identity     sts:GetCallerIdentity with those credentials\n\
                      \nThen, read from this place's files only (no packet is sent): the route to IMDS, \
                      routed or through a user-space network stack (a TAP device, as slirp4netns and \
                      pasta serve; slirp4netns named by its gateway's MAC). Behind a stack the hop limit \
                      counts only up to where the stack runs, and a note says so.",
        after_help = "Environment (read as the AWS SDKs read it):\n  \
                      AWS_EC2_METADATA_SERVICE_ENDPOINT       IMDS endpoint [default: http://169.254.169.254]\n  \
                      AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE  IPv4 or IPv6 (http://[fd00:ec2::254]) when no endpoint is set\n  \
                      AWS_EC2_METADATA_DISABLED               true: IMDS is off here, nothing is sent\n  \
                      AWS_REGION, AWS_DEFAULT_REGION          region for STS [default: the instance's, from IMDS]\n  \
                      AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL  STS endpoint\n\
                      \n\
                      Exit status: 0 when every requested step succeeded, 1 when one failed,\n\
                      2 for usage or configuration errors."
    )]
    Probe(ProbeArgs),

    /// Check the instance's hop limit against what the builds need
    #[command(
        long_about = "Check the instance's metadata hop limit (HttpPutResponseHopLimit) against what \
                      builds in a topology need. Run it on the EC2 host: it learns the instance id \
                      and region from IMDS and reads the instance's MetadataOptions with \
                      ec2:DescribeInstances, using the instance role's own credentials.",
        after_help = "Exit status: 0 the hop limit is exactly the need, 1 too low (builds will get no\n\
                      credentials), 3 higher than needed (builds work, but the role is exposed further\n\
                      than necessary), 2 the check could not run (no IMDS, IMDS disabled, no\n\
                      permission for ec2:DescribeInstances, bad arguments)."
    )]
    Check(CheckArgs),

    /// Set the instance's hop limit to exactly what the builds need (dry run unless --apply)
    #[command(
        long_about = "Compute the metadata options the builds need (hop limit exactly the need, \
                      tokens required, endpoint enabled) and print the change. With --apply, call \
                      ec2:ModifyInstanceMetadataOptions, wait (up to 30 s) until DescribeInstances \
                      says the change is applied, then verify from here with the TTL probe and an \
                      IMDSv2 token fetch. Running it again changes nothing. The instance's tags say \
                      whether an Auto Scaling group or a launch template will undo the change.\n\n\
                      At the source instead (credentials and region from the AWS SDK's default \
                      chains): --launch-template ID|NAME [--set-default] makes a new template \
                      version from the default one with exactly these options; --account-defaults \
                      sets the region's instance metadata defaults; --print terraform|cloudformation \
                      prints the block for infrastructure code, --print scp|config-rule the policy \
                      documents. Each prints the AWS CLI equivalent. With --organization, \
                      --launch-templates and --account-defaults plan the fixes in every account \
                      and region (--apply makes them).",
        after_help = "Exit status: 0 done, nothing to do, or dry run; 1 applied but the verification\n\
                      failed; 2 could not read or change the options (no IMDS, no permission, bad\n\
                      arguments)."
    )]
    Enforce(EnforceArgs),

    /// Audit every instance of the account and region: hop limit and tokens against what its builds need
    #[command(
        long_about = "Page through ec2:DescribeInstances (1000 at a time, as EC2 pages them) and, for \
                      every instance, compare its hop limit and tokens mode with what its builds \
                      need: the baseline's need for the topology in its imds-shim:topology tag \
                      (e.g. imds-shim:topology=earthly-run), or for --topology/--need when it has \
                      none. Credentials and region come from the AWS SDK's default chains \
                      (environment, profile, the instance role). Throttling (RequestLimitExceeded) \
                      is retried with the SDK's backoff, up to 10 attempts a call, and counted.",
        after_help = "Verdicts: right; too low (builds fail); endpoint disabled (builds fail); tokens\n\
                      optional (IMDSv1 open); too high (more exposure than needed); unknown topology\n\
                      (the tag names nothing the baseline records).\n\n\
                      Exit status: 0 every instance right, 1 some too low or endpoint disabled,\n\
                      2 cannot audit (bad arguments, no credentials, EC2 refused, or an instance's\n\
                      topology tag is unknown and none is too low), 3 none too low but some too\n\
                      high or with tokens optional."
    )]
    Audit(AuditArgs),

    /// Run a build; if it fails for want of AWS credentials, say why and how to fix it
    #[command(
        long_about = "Check the hop limit (a warning when it is too low; --strict makes that fatal), \
                      run the command with its output streamed, and if it fails and its output shows \
                      a credentials failure (the AWS CLI's `Unable to locate credentials`, the AWS \
                      SDK for Rust's or Go's IMDS errors), print where the build ran, the hop limit \
                      it needs and the instance's, the fix, and for Earthly the RUN --aws \
                      alternative. The check's messages and the diagnosis go to stderr.",
        after_help = "Example:\n  imds-shim run -- earthly +probe\n\n\
                      Signals: while the command runs, SIGINT and SIGTERM do not end imds-shim; they are\n\
                      passed on to the command's pid and imds-shim waits for it. The command stays in\n\
                      imds-shim's process group, so a Ctrl-C at the terminal reaches it (and what it\n\
                      started) directly and is not sent a second time; a SIGTERM or SIGINT sent to\n\
                      imds-shim's pid alone (`kill PID`, a supervisor signalling the process it started)\n\
                      is passed on, to the command's pid only. One sent to the whole group (`timeout`,\n\
                      `kill -- -PGID`) reaches the command directly and once more through imds-shim. A\n\
                      signal ignored when imds-shim starts stays ignored, for the command too.\n\n\
                      Exit status: the command's (128 + N when killed by signal N); 127 when it cannot\n\
                      be started; with --strict, the check's status (1 or 2) when it fails, and the\n\
                      command is not run."
    )]
    Run(RunArgs),

    /// Serve the instance role's credentials to granted builds at 169.254.170.2, at any depth, with hop limit 1
    #[command(
        long_about = "Serve the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, \
                      or _FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN) on the EC2 host: the \
                      instance role's credentials, fetched from IMDS here (depth 0) and refreshed \
                      before expiry, to the builds given a grant (`relay grant`), however deep they \
                      run, while the instance keeps hop limit 1. Run as root: it adds its address to \
                      a dummy link of its own and removes it on exit."
    )]
    Relay(Box<relay_command::RelayArgs>),

    /// Write the manual pages and shell completions (for packaging)
    #[command(hide = true)]
    Manual {
        /// The directory to write man1/ and completions/ in
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },

    /// Keep the rootless containers of a user (behind slirp4netns or pasta) from IMDS, by socket owner
    #[command(
        long_about = "Rootless Podman or Docker run a build's network through slirp4netns or pasta, \
                      which open each connection anew from the host as the user who runs them: the \
                      hop limit does not keep such builds from the instance role. `fence` installs \
                      output rules by socket owner (nftables `meta skuid`, or iptables `-m owner` \
                      where nft is not there) so that the user's sockets cannot reach IMDS \
                      (169.254.169.254, fd00:ec2::254) while the relay (169.254.170.2, \
                      169.254.170.23, fd00:ec2::23) stays reachable: builds get credentials only \
                      through a grant. Only the table inet imdsh_fence (or the chain imdsh-fence) \
                      is written. Without --apply, --remove or --check it prints the rules. Run on \
                      the EC2 host, as root.",
        after_help = "Exit status: 0 done (or, with --check, the user is fenced); 1 with --check, the\n\
                      user is not fenced; 2 the rules could not be read or changed (no such user,\n\
                      uid 0, no nft or iptables, not root)."
    )]
    Fence(fence_command::FenceArgs),

    /// Say who a build is: the identity the AWS SDK's default chain finds here
    #[command(
        long_about = "Say who a build is: credentials resolved by the AWS SDK for Rust's default \
                      chain, as any program on it resolves them (the environment, the config files, \
                      the container endpoint of a relay grant with its token or token file, IMDS), \
                      then sts:GetCallerIdentity. Printed as `aws sts get-caller-identity` prints \
                      it. Run it inside a build to see what the build gets.",
        after_help = "Exit status: 0 an identity (printed as JSON); 1 none (no credentials, or STS\n\
                      refused them; the reason on stderr); 2 bad arguments."
    )]
    Whoami(whoami_command::WhoamiArgs),
}

#[derive(Debug, Args)]
struct NeedArgs {
    /// Where the builds run: a topology of the baseline
    #[arg(
        long,
        value_name = "NAME",
        default_value_t = baseline::DEFAULT_TOPOLOGY.into(),
        help = topology_help()
    )]
    topology: Topology,

    /// The baseline to read the need from [default: fixtures/hop-limits.toml if it exists here, else the copy built into imds-shim]
    #[arg(long, value_name = "FILE", conflicts_with = "need")]
    baseline: Option<PathBuf>,

    /// The hop limit the builds need (1..=64), instead of the baseline's entry
    #[arg(long, value_name = "N")]
    need: Option<HopLimit>,

    #[command(flatten)]
    timeout: ImdsTimeout,
}

/// `--timeout-ms`, shared by every subcommand that talks to IMDS.
#[derive(Debug, Args)]
struct ImdsTimeout {
    /// IMDS connect and read timeout in milliseconds (the AWS SDK's default is 1000); also bounds each TTL attempt
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    timeout_ms: u64,
}

impl ImdsTimeout {
    fn get(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `--topology`'s help: every preset and the chain spellings.
fn topology_help() -> String {
    format!(
        "Where the builds run: a topology of the baseline ({})",
        imds_vocab::topology::valid_names()
    )
}

impl NeedArgs {
    fn resolve(&self) -> anyhow::Result<Need> {
        Ok(baseline::resolve(
            self.topology,
            self.baseline.as_deref(),
            self.need,
        )?)
    }

    fn timeout(&self) -> Duration {
        self.timeout.get()
    }
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    need: NeedArgs,
}

#[derive(Debug, Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is a command-line switch of its own"
)]
struct EnforceArgs {
    #[command(flatten)]
    need: NeedArgs,

    /// Make the change (without it, only print it)
    #[arg(long, conflicts_with = "print")]
    apply: bool,

    /// Fix a launch template instead (an id lt-... or a name): a new version from its default
    /// version with exactly the need, tokens required; every other parameter unchanged
    #[arg(long, value_name = "ID|NAME", conflicts_with_all = ["account_defaults", "print", "organization"])]
    launch_template: Option<String>,

    /// With --launch-template: make the new version the template's default
    #[arg(long, requires = "launch_template")]
    set_default: bool,

    /// Fix the account's instance metadata defaults for the region instead (with
    /// --organization: every account's in every region)
    #[arg(long, conflicts_with = "print")]
    account_defaults: bool,

    /// With --organization: fix every launch template whose default version gives less
    /// or more than the builds launched from it need
    #[arg(long, requires = "organization")]
    launch_templates: bool,

    /// With --organization and --json: JSON lines, one per fix, the summary last
    #[arg(long, requires = "organization")]
    json: bool,

    #[command(flatten)]
    org: OrgArgs,

    /// Print the metadata options block for infrastructure code instead (terraform,
    /// cloudformation), or a policy that holds an organization to the need (scp: a service
    /// control policy's content; config-rule: AWS Config's PutConfigRule input)
    #[arg(long, value_name = "DIALECT", conflicts_with = "organization")]
    print: Option<Dialect>,
}

#[derive(Debug, Args)]
struct AuditArgs {
    #[command(flatten)]
    need: NeedArgs,

    /// Only instances matching this DescribeInstances filter, e.g. tag:team=build (repeatable; NAME=V1,V2 for any filter)
    #[arg(long, value_name = "tag:KEY=VALUE", value_parser = audit::parse_filter)]
    filter: Vec<(String, Vec<String>)>,

    /// Print JSON instead of the summary and table (with --organization: JSON lines, one
    /// record per resource as it is audited, the summary last)
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    org: OrgArgs,
}

/// Where `audit` and `enforce` work across an organization.
#[derive(Debug, Args)]
struct OrgArgs {
    /// Every account of the organization (Organizations ListAccounts; needs the management
    /// account's credentials) in every region, assuming --role-name in each
    #[arg(long)]
    organization: bool,

    /// With --organization: these accounts instead of ListAccounts' (ID,...)
    #[arg(long, value_name = "ID,...", requires = "organization")]
    accounts: Option<AccountIds>,

    /// With --organization: `all` (the regions each account has enabled) or R,...
    #[arg(
        long,
        value_name = "all|R,...",
        default_value = "all",
        requires = "organization"
    )]
    regions: Regions,

    /// With --organization: the role assumed in each account
    #[arg(long, value_name = "NAME", default_value = organization::DEFAULT_ROLE_NAME, requires = "organization")]
    role_name: String,

    /// With --organization: accounts and regions worked on at a time
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256), requires = "organization")]
    concurrency: u16,

    /// With --organization: exit by the verdicts even when some account or region could
    /// not be reached (it is still named)
    #[arg(long, requires = "organization")]
    allow_partial: bool,
}

impl OrgArgs {
    fn request(&self, audit: AuditRequest) -> OrgAuditRequest {
        OrgAuditRequest {
            accounts: self.accounts.clone().map(|a| a.0),
            regions: self.regions.clone(),
            role_name: self.role_name.clone(),
            concurrency: usize::from(self.concurrency),
            audit,
            allow_partial: self.allow_partial,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    need: NeedArgs,

    /// Do not run the command when the check says builds get no credentials, or cannot check
    #[arg(long)]
    strict: bool,

    /// Skip the check before the command
    #[arg(long, conflicts_with = "strict")]
    no_check: bool,

    /// The command to run, and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Print one JSON object on stdout instead of the report
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    timeout: ImdsTimeout,

    /// Largest IP TTL (hop limit) to try when measuring the hop limit this place needs
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        value_parser = clap::value_parser!(u8).range(1..=255)
    )]
    ttl_max: u8,

    /// Which steps to run
    #[arg(long, value_enum, value_name = "STEPS", default_value_t = Steps::All)]
    only: Steps,
}

/// The command line, where an option given twice takes its last value: those of `--config`
/// come first, the command line's after them.
fn command_line() -> clap::Command {
    fn override_self(cmd: clap::Command) -> clap::Command {
        cmd.args_override_self(true).mut_subcommands(override_self)
    }
    override_self(Cli::command())
}

/// The arguments, with those of `--config FILE` in place; a bad file stops here.
fn parse() -> Cli {
    let cmd = command_line();
    let args = match config::expand(&cmd, std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("imds-shim: error: {e}");
            std::process::exit(EXIT_USAGE.into());
        }
    };
    let matches = cmd.get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse();
    let result = match cli.command {
        Command::Probe(args) => probe_command(&args),
        Command::Check(args) => check_command(&args),
        Command::Enforce(args) => enforce_command(&args),
        Command::Audit(args) => audit_command(&args),
        Command::Run(args) => run_command(&args),
        Command::Relay(args) => relay_command::relay_command(*args),
        Command::Manual { out } => manual::write(&Cli::command(), &out)
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Fence(args) => fence_command::fence_command(&args),
        Command::Whoami(args) => whoami_command::whoami_command(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("imds-shim: error: {e:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn check_command(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let need = args.need.resolve()?;
    let place = Place::from_env(|name| std::env::var(name).ok())?;
    let outcome = runtime()?.block_on(check::check(&place, need, args.need.timeout()))?;
    print!("{}", outcome.render());
    Ok(ExitCode::from(outcome.verdict().exit_code()))
}

fn audit_command(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let request = AuditRequest {
        filters: args.filter.clone(),
        default_need: args.need.resolve()?,
        baseline: args.need.baseline.clone(),
    };
    if args.org.organization {
        let request = args.org.request(request);
        let allow_partial = args.org.allow_partial;
        return run_organization(
            args.json,
            args.need.timeout(),
            |sdk, tx| async move { organization::audit_organization(&sdk, &request, tx).await },
            |summary| organization::exit_code(summary, allow_partial),
        );
    }
    let report = runtime()?.block_on(async {
        let api = FleetApi::connect(args.need.timeout()).await?;
        audit::audit(&api, &request).await
    })?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string(&report)?)
    } else {
        report.render()
    };
    write_stdout(&text)?;
    Ok(ExitCode::from(report.summary.exit_code))
}

/// `audit --organization` or `enforce --organization`: `work` sends its records to a
/// writer thread as they come; its summary goes last, with the exit status.
fn run_organization<F, Fut>(
    json: bool,
    imds_timeout: std::time::Duration,
    work: F,
    exit: impl Fn(&OrgSummary) -> u8,
) -> anyhow::Result<ExitCode>
where
    F: FnOnce(aws_config::SdkConfig, tokio::sync::mpsc::Sender<Record>) -> Fut,
    Fut: std::future::Future<Output = Result<OrgSummary, OrgAuditError>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let writer = org_writer::spawn(rx, json);
    let summary = runtime.block_on(async {
        let sdk = api::sdk_config(imds_timeout).await?;
        let mut summary = work(sdk, tx.clone()).await?;
        summary.exit_code = exit(&summary);
        let _ = tx.send(Record::Summary(summary.clone())).await;
        anyhow::Ok(summary)
    });
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    let summary = summary?;
    written.context("cannot write to stdout")?;
    Ok(ExitCode::from(summary.exit_code))
}

/// Writes `text` to stdout; a reader that stopped early (`audit | head`) is no error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the audit to stdout")
        }
        _ => Ok(()),
    }
}

/// `enforce --launch-template`, `--account-defaults` or `--print`; `None` for the instance.
fn enforce_at_source(args: &EnforceArgs, need: &Need) -> anyhow::Result<Option<ExitCode>> {
    if let Some(dialect) = args.print {
        print!("{}", iac::render(dialect, need));
        return Ok(Some(ExitCode::SUCCESS));
    }
    if let Some(template) = &args.launch_template {
        let template = TemplateRef::parse(template);
        runtime()?.block_on(async {
            let api = FleetApi::connect(args.need.timeout()).await?;
            launch_template::enforce(&api, &template, need, args.set_default, args.apply).await
        })?;
        return Ok(Some(ExitCode::SUCCESS));
    }
    if args.account_defaults {
        runtime()?.block_on(async {
            let api = FleetApi::connect(args.need.timeout()).await?;
            defaults::enforce(&api, need, args.apply).await
        })?;
        return Ok(Some(ExitCode::SUCCESS));
    }
    Ok(None)
}

/// `enforce --organization --launch-templates --account-defaults`.
fn organization_enforce_command(args: &EnforceArgs, need: Need) -> anyhow::Result<ExitCode> {
    if !args.launch_templates && !args.account_defaults {
        anyhow::bail!(
            "enforce --organization fixes --launch-templates, --account-defaults or both: name \
             which"
        );
    }
    let request = OrgEnforceRequest {
        walk: args.org.request(AuditRequest {
            filters: Vec::new(),
            default_need: need,
            baseline: args.need.baseline.clone(),
        }),
        launch_templates: args.launch_templates,
        account_defaults: args.account_defaults,
        apply: args.apply,
    };
    let allow_partial = args.org.allow_partial;
    run_organization(
        args.json,
        args.need.timeout(),
        |sdk, tx| async move { org_enforce::enforce_organization(&sdk, &request, tx).await },
        |summary| org_enforce::exit_code(summary, allow_partial),
    )
}

fn enforce_command(args: &EnforceArgs) -> anyhow::Result<ExitCode> {
    let need = args.need.resolve()?;
    if args.org.organization {
        return organization_enforce_command(args, need);
    }
    if let Some(code) = enforce_at_source(args, &need)? {
        return Ok(code);
    }
    let place = Place::from_env(|name| std::env::var(name).ok())?;
    let outcome = runtime()?.block_on(enforce::enforce(
        &place,
        &need,
        args.apply,
        args.need.timeout(),
    ))?;
    Ok(match outcome {
        EnforceOutcome::NoChange | EnforceOutcome::DryRun | EnforceOutcome::Applied => {
            ExitCode::SUCCESS
        }
        EnforceOutcome::VerifyFailed => {
            eprintln!("imds-shim: the change is applied, but this place still cannot get a token");
            ExitCode::from(EXIT_FAILED)
        }
    })
}

fn run_command(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let earthly = run::is_earthly(&args.command);
    let mut ctx = diagnosis::Context::new(args.need.topology);
    ctx.earthly_command = earthly;
    let say = |text: &str| {
        for line in text.lines() {
            eprintln!("imds-shim: {line}");
        }
    };
    match args.need.resolve() {
        Ok(need) => ctx.need = Some((need.hop_limit, need.source)),
        Err(e) if args.strict => return Err(e),
        Err(e) => say(&format!("warning: {e:#}")),
    }
    if !args.no_check {
        if let Some((hop_limit, _)) = &ctx.need {
            let need = args.need.resolve()?;
            debug_assert_eq!(need.hop_limit, *hop_limit);
            let place = Place::from_env(|name| std::env::var(name).ok());
            let checked = match place {
                Ok(place) => runtime()?
                    .block_on(check::check(&place, need, args.need.timeout()))
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            match checked {
                Ok(outcome) => {
                    say(&outcome.render());
                    ctx.current = Some(outcome.options.hop_limit);
                    ctx.instance_id = Some(outcome.instance_id.clone());
                    if args.strict && outcome.verdict() == Verdict::TooLow {
                        say("--strict: not running the command");
                        return Ok(ExitCode::from(outcome.verdict().exit_code()));
                    }
                }
                Err(e) if args.strict => {
                    say(&format!("{e:#}"));
                    say("--strict: not running the command");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
                Err(e) => {
                    say(&format!("warning: {e:#}; running the command anyway"));
                    ctx.check_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    let finished = match run::execute(&args.command) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "imds-shim: cannot run {}: {e}",
                args.command[0].to_string_lossy()
            );
            return Ok(ExitCode::from(127));
        }
    };
    if finished.code != 0 {
        if let Some(failure) = classify::classify(&finished.output) {
            // Files only: what imds-shim's own place routes IMDS through.
            ctx.network = Place::from_env(|name| std::env::var(name).ok())
                .ok()
                .and_then(|place| probe::imds_address(&place, None))
                .and_then(probe::network::detect);
            eprint!("\n{}", diagnosis::render(&failure, &ctx));
        }
    }
    Ok(ExitCode::from(u8::try_from(finished.code).unwrap_or(1)))
}

fn probe_command(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let place = Place::from_env(|name| std::env::var(name).ok())?;
    let opts = ProbeOptions {
        steps: args.only,
        timeout: args.timeout.get(),
        ttl_max: args.ttl_max,
    };
    let report = runtime()?.block_on(probe::run(&opts, &place));
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render::human(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use strum::VariantArray;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_shipped_configuration_fits_the_command_line_and_the_command_line_wins() {
        let path = std::path::Path::new(config::DEFAULT_PATH);
        let shipped = config::Config::parse(path, include_str!("../debian/config.toml")).unwrap();
        let cmd = command_line();
        assert_eq!(
            shipped.flags(&cmd, &["enforce"]).unwrap(),
            ["--topology", "earthly-run"]
        );
        let relay = shipped.flags(&cmd, &["relay"]).unwrap();
        assert_eq!(relay, ["--state", "/var/lib/imds-shim/grants.json"]);
        let mut argv: Vec<OsString> = ["imds-shim", "--config", "x", "relay"]
            .iter()
            .map(OsString::from)
            .collect();
        argv.extend(relay);
        argv.extend(["--state", "/tmp/mine.json"].map(OsString::from));
        let cli = Cli::from_arg_matches(&cmd.get_matches_from(argv)).unwrap();
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("x")));
        let Command::Relay(args) = cli.command else {
            panic!("not relay")
        };
        assert!(format!("{args:?}").contains("/tmp/mine.json"), "{args:?}");
    }

    #[test]
    fn probe_defaults() {
        let cli = Cli::try_parse_from(["imds-shim", "probe"]).unwrap();
        let Command::Probe(args) = cli.command else {
            panic!("not probe")
        };
        assert!(!args.json);
        assert_eq!(args.timeout.timeout_ms, 1000);
        assert_eq!(args.ttl_max, 64);
        assert_eq!(args.only, Steps::All);
    }

    #[test]
    fn probe_flags() {
        let cli = Cli::try_parse_from([
            "imds-shim",
            "probe",
            "--json",
            "--timeout-ms",
            "250",
            "--ttl-max",
            "8",
            "--only",
            "sdk",
        ])
        .unwrap();
        let Command::Probe(args) = cli.command else {
            panic!("not probe")
        };
        assert!(args.json);
        assert_eq!(args.timeout.timeout_ms, 250);
        assert_eq!(args.ttl_max, 8);
        assert_eq!(args.only, Steps::Sdk);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for argv in [
            &["imds-shim", "probe", "--ttl-max", "0"][..],
            &["imds-shim", "probe", "--ttl-max", "256"],
            &["imds-shim", "probe", "--timeout-ms", "0"],
            &["imds-shim", "probe", "--only", "token"],
            &["imds-shim", "check", "--need", "0"],
            &["imds-shim", "check", "--need", "65"],
            &["imds-shim", "enforce", "--need", "0", "--apply"],
            &["imds-shim", "enforce", "--need", "65"],
            &["imds-shim", "check", "--need", "3", "--baseline", "b.toml"],
            &["imds-shim", "run", "--need", "65", "--", "true"],
            &["imds-shim", "run", "--strict", "--no-check", "--", "true"],
            &["imds-shim", "run"],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{argv:?}");
        }
    }

    #[test]
    fn need_flags_and_defaults() {
        let cli = Cli::try_parse_from(["imds-shim", "check"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check")
        };
        assert_eq!(args.need.topology.to_string(), "earthly-run");
        assert_eq!((args.need.need, args.need.baseline), (None, None));
        let cli = Cli::try_parse_from(["imds-shim", "enforce", "--need", "64", "--apply"]).unwrap();
        let Command::Enforce(args) = cli.command else {
            panic!("not enforce")
        };
        assert_eq!(args.need.need, Some(HopLimit::MAX));
        assert!(args.apply);
    }

    #[test]
    fn topology_help_and_errors_name_every_preset_and_the_chains() {
        let help = topology_help();
        for preset in imds_vocab::Preset::VARIANTS {
            assert!(help.contains(preset.name()), "{help}");
        }
        assert!(
            help.contains("chain:N") && help.contains("chain:rrpr"),
            "{help}"
        );
        let err = Cli::try_parse_from(["imds-shim", "check", "--topology", "podman"]).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE));
        let msg = err.to_string();
        assert!(
            msg.contains("podman-rootless-pasta") && msg.contains("chain:rrpr"),
            "{msg}"
        );
        for name in [
            "podman-rootless",
            "gitlab-dind-build",
            "k8s-pod-dind",
            "chain:rp",
        ] {
            let cli = Cli::try_parse_from(["imds-shim", "enforce", "--topology", name]).unwrap();
            let Command::Enforce(args) = cli.command else {
                panic!("not enforce")
            };
            assert_eq!(args.need.topology.to_string(), name);
        }
    }

    #[test]
    fn run_takes_the_command_after_the_double_dash() {
        let cli = Cli::try_parse_from([
            "imds-shim",
            "run",
            "--topology",
            "docker-run",
            "--strict",
            "--",
            "earthly",
            "--ci",
            "+probe",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.strict && !args.no_check);
        assert_eq!(args.need.topology.to_string(), "docker-run");
        assert_eq!(args.command, ["earthly", "--ci", "+probe"]);
    }
}

//! `imds-shim fence` (the binary's side: the arguments and what is printed; the rules are
//! `imds_shim::fence`).

use std::process::ExitCode;

use clap::{ArgGroup, Args};

use imds_shim::fence::{Change, FencedUser, Firewall, IMDS_V4, IMDS_V6, RELAY_ADDRESSES};

/// Exit code of `--check` when the user is not fenced.
const EXIT_NOT_COVERED: u8 = 1;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("who").required(true).args(["user", "uid"])))]
#[command(group(ArgGroup::new("action").args(["apply", "remove", "check"])))]
pub(crate) struct FenceArgs {
    /// The user whose rootless containers' slirp4netns or pasta must not reach IMDS
    #[arg(long, value_name = "NAME")]
    user: Option<String>,

    /// The same by uid (it need not have a name here)
    #[arg(long, value_name = "UID")]
    uid: Option<u32>,

    /// Install the rules (again: changes nothing)
    #[arg(long)]
    apply: bool,

    /// Remove this user's rules; the table or chain goes with the last user
    #[arg(long)]
    remove: bool,

    /// Exit 0 when the user is fenced, 1 when not
    #[arg(long)]
    check: bool,

    /// The firewall to use: nftables or iptables [default: nftables where `nft` works, else iptables]
    #[arg(long, value_name = "NAME")]
    firewall: Option<Firewall>,
}

pub(crate) fn fence_command(args: &FenceArgs) -> anyhow::Result<ExitCode> {
    // The user first: a name that resolves to nobody changes nothing.
    let user = match (&args.user, args.uid) {
        (Some(name), _) => FencedUser::by_name(name)?,
        (None, Some(uid)) => FencedUser::by_uid(uid)?,
        (None, None) => unreachable!("clap requires one"),
    };
    let firewall = match args.firewall {
        Some(firewall) => firewall,
        None => Firewall::detect()?,
    };
    let place = firewall.place();
    if args.check {
        let status = firewall.status()?;
        if status.covers(user.uid) {
            println!(
                "{user} is fenced: its sockets cannot reach IMDS ({IMDS_V4}, {IMDS_V6}) ({place})"
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!("{user} is NOT fenced ({place})");
        for what in &status.missing {
            println!("  missing: {what}");
        }
        println!(
            "  its rootless containers' slirp4netns or pasta reach IMDS at hop limit 1, without a \
             grant; fence it with `imds-shim fence --uid {} --apply`",
            user.uid
        );
        return Ok(ExitCode::from(EXIT_NOT_COVERED));
    }
    if args.remove {
        match firewall.remove(&user)? {
            Change::Made => println!("{user} is no longer fenced ({place})"),
            Change::Nothing => println!("{user} was not fenced: nothing changed ({place})"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.apply {
        let change = firewall.apply(&user)?;
        let status = firewall.status()?;
        if !status.covers(user.uid) {
            anyhow::bail!(
                "the rules were written but {user} is not covered: missing {}",
                status.missing.join(", ")
            );
        }
        match change {
            Change::Made => println!("fenced {user} ({place})"),
            Change::Nothing => println!("{user} was fenced already: nothing changed ({place})"),
        }
        println!(
            "  its sockets cannot reach IMDS ({IMDS_V4}, {IMDS_V6}): refused on the host; the relay \
             ({RELAY_ADDRESSES}) and every other address are not touched"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("# imds-shim fence for {user}, with {place} (dry run: --apply installs it)");
    print!("{}", firewall.plan(&user));
    Ok(ExitCode::SUCCESS)
}

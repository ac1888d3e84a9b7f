//! What to tell the user when a wrapped command failed for want of credentials: where it ran,
//! the hop limit it needs and the instance's, the fix, and for Earthly the alternative that
//! changes nothing on the instance.
//!
//! Behind a user-space network stack (a proxied `--topology`, or imds-shim itself behind
//! one) the stack re-sends the token response, so only the routing hops before the stack
//! count: when there are none, the diagnosis never advises raising the hop limit and
//! points at what else it can be.

use std::fmt::Write as _;

use imds_vocab::fix::FixCommand;
use imds_vocab::report::NetworkDetail;
use imds_vocab::topology::Layer;
use imds_vocab::{Client, HopLimit, Preset, Topology};

use super::classify::CredentialFailure;
use crate::baseline::NeedSource;

/// What the check before the command learnt; every field but the topology may be unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Where the build ran, e.g. `earthly-run`.
    pub topology: Topology,
    /// The hop limit that topology needs, and where that came from.
    pub need: Option<(HopLimit, NeedSource)>,
    /// The instance's hop limit now.
    pub current: Option<HopLimit>,
    /// The instance id.
    pub instance_id: Option<String>,
    /// Why the check could not run, if it could not.
    pub check_error: Option<String>,
    /// Whether the command is an Earthly build (`earthly ...`).
    pub earthly_command: bool,
    /// What imds-shim's own place's files say about its route to IMDS.
    pub network: Option<NetworkDetail>,
}

impl Context {
    /// Nothing known yet but where the build runs.
    pub fn new(topology: Topology) -> Self {
        Context {
            topology,
            need: None,
            current: None,
            instance_id: None,
            check_error: None,
            earthly_command: false,
            network: None,
        }
    }
}

/// A user-space network stack between the host and the build.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StackPlace {
    /// `slirp4netns`, `pasta`, or "a user-space network stack (e.g. pasta)".
    name: String,
    /// The routing hops between the host and the stack; `None` when not known (the stack
    /// was seen from imds-shim's own place, not named by `--topology`).
    routed_before: Option<usize>,
}

impl StackPlace {
    /// From `--topology`'s first proxied layer, else from imds-shim's own network.
    fn of(ctx: &Context) -> Option<StackPlace> {
        let first = ctx.topology.layers().iter().find_map(|l| match l {
            Layer::Proxied(stack) => Some(*stack),
            Layer::Routed(_) => None,
        });
        if let Some(stack) = first {
            return Some(StackPlace {
                name: stack.program().to_owned(),
                routed_before: Some(ctx.topology.routed_hops()),
            });
        }
        ctx.network
            .as_ref()
            .filter(|n| n.is_user_space())
            .map(|n| StackPlace {
                name: n.stack_name(),
                routed_before: None,
            })
    }
}

fn hops(n: usize) -> String {
    match n {
        1 => "1 routing hop".to_owned(),
        n => format!("{n} routing hops"),
    }
}

/// What the diagnosis blames.
enum Why {
    /// Behind a user-space stack with no routing hop before it (or enough for them).
    StackNotTheCause(StackPlace),
    /// Behind a user-space stack that runs this many routing hops from the host, with
    /// the hop limit short of them (or unknown).
    StackBehindHops(StackPlace, usize),
    /// Routed, and the hop limit is enough.
    Enough(HopLimit),
    /// Routed, and the hop limit too low or unknown.
    Routed,
}

/// Why it is not the hop limit behind a user-space stack, and what to check instead.
fn not_the_hop_limit_behind_a_stack(w: &mut String, stack: &StackPlace, ctx: &Context) {
    let instance = match ctx.current {
        Some(current) => format!("the instance's hop limit ({current})"),
        None => "the instance's hop limit".to_owned(),
    };
    let place = match stack.routed_before {
        Some(0) => {
            "the stack runs on the host (no routing hop before it), so 1 is enough".to_owned()
        }
        Some(n) => format!(
            "the stack runs {} from the host, and {instance} covers them",
            hops(n)
        ),
        None => "where the stack runs is not visible from here: on the host (rootless Podman or \
                 Docker) 1 is enough; inside a container, that container's routing hops count"
            .to_owned(),
    };
    let _ = writeln!(
        w,
        "Why: not the hop limit. The build reaches IMDS through {}, a user-space network stack: it \
         ends the build's connections and opens its own from the namespace it runs in, so the token \
         response is re-sent by the stack with a TTL of its own, and {instance} only has to carry it \
         to the stack; {place}. Raising the hop limit would not help this build, and would let \
         containers on routed networks (docker0, CNI bridges) take the role.",
        stack.name
    );
    let _ = writeln!(w, "Check instead:");
    for item in [
        "IMDS from the build: `imds-shim probe` inside it should show `network        user-space` and \
         `hop limit needed: 1`; a failed connect there means the stack does not reach 169.254.169.254 (--network none, \
         a firewall in the stack's namespace)",
        "IMDS where the stack runs: `imds-shim probe` there (for rootless Podman, on the host as the \
         user who runs podman); a stack started inside a container (Podman in a CI job container) is \
         behind that container's routing hops, and the probe there says what the instance needs",
        "the instance: a role attached (IMDS answers 404 for iam/security-credentials/ without one) \
         and the endpoint enabled (HttpEndpoint=disabled answers 403)",
        "the build's environment: AWS_EC2_METADATA_DISABLED not set, no HTTP proxy for IMDS \
         (HTTP_PROXY without NO_PROXY=169.254.169.254: IMDS refuses a token request carrying \
         X-Forwarded-For), and with HttpTokens=optional no AWS_EC2_METADATA_V1_DISABLED for a client \
         that uses IMDSv1",
    ] {
        let _ = writeln!(w, "  - {item}");
    }
}

/// Why the hop limit falls short for a stack that runs behind routing hops.
fn stack_behind_routing_hops(w: &mut String, stack: &StackPlace, routed_before: usize) {
    let _ = writeln!(
        w,
        "Why: the build reaches IMDS through {}, a user-space network stack that runs {} from the \
         host. The stack re-sends the token response to the build, so the layers behind it do not \
         count; but its own connection gets the response with the instance's hop limit as IP TTL, \
         which every routing hop between the host and the stack lowers by one: it needs hop limit {}, \
         and below that the token is dropped before it reaches the stack.",
        stack.name,
        hops(routed_before),
        routed_before + 1
    );
}

/// What the client does when the token response does not come, as measured with the
/// real client at a real leaf (`fixtures/clients/timings.toml`: two routing hops, hop
/// limit 2; medians of 3 runs on the project's test machine).
fn client_note(client: Client) -> String {
    let (who, gives_up) = match client {
        Client::RustSdk => {
            return "The AWS SDK for Rust uses IMDSv2 only and never falls back to IMDSv1: when the token \
                    response does not reach the build, it gives up after its 1 s read timeout."
                .to_owned()
        }
        Client::Cli => ("The AWS CLI", "it gave up after about 2 s"),
        Client::Boto3 => ("boto3 (botocore, as the AWS CLI)", "it gave up after about 2 s"),
        Client::GoSdkV2 => ("The AWS SDK for Go v2", "it gave up after about 5 s"),
        Client::GoSdkV1 => ("The AWS SDK for Go v1", "it gave up after about 3 s"),
        Client::RubySdk => ("The AWS SDK for Ruby", "it gave up after about 7 s"),
    };
    format!(
        "{who} falls back to IMDSv1 when the token does not come ({gives_up} two hops deep); it still \
         found no credentials, so the instance requires tokens (HttpTokens=required) and the token \
         response did not reach the build."
    )
}

/// Where Earthly's `RUN --aws` helps: the Earthly CLI resolves the credentials on the
/// host (aws-sdk-go-v2's default chain, at hop limit 1 with tokens required) and hands
/// them to the RUN step as environment variables, which every SDK reads first. It helps
/// in a RUN step, and, passed on, in the containers a `WITH DOCKER` step starts; not in
/// `LOCALLY` (on the host it is not needed) nor outside Earthly.
fn run_with_aws(topology: &Topology) -> Option<&'static str> {
    match topology.preset()? {
        Preset::EarthlyRun | Preset::EarthlyCni => Some(""),
        Preset::EarthlyWithDocker => Some(
            "The containers a WITH DOCKER step starts do not inherit them: pass them on with \
             `docker run -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN ...` (not tried here).",
        ),
        Preset::Host
        | Preset::DockerRun
        | Preset::BuildkitRun
        | Preset::PodmanRun
        | Preset::PodmanRootless
        | Preset::PodmanRootlessPasta
        | Preset::BuildahRun
        | Preset::GitlabDindJob
        | Preset::GitlabDindBuild
        | Preset::K8sPodDind => None,
    }
}

/// The diagnosis, several lines, each ending with a newline.
pub fn render(failure: &CredentialFailure, ctx: &Context) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "imds-shim: the command failed because it got no AWS credentials."
    );
    let _ = writeln!(
        w,
        "  said by:      {} ({})",
        failure.client.description(),
        failure.evidence
    );
    let _ = writeln!(w, "  where:        {}", ctx.topology.where_it_runs());
    let stack = StackPlace::of(ctx);
    if let (Some(stack), Some(n)) = (&stack, &ctx.network) {
        if stack.routed_before.is_none() {
            let _ = writeln!(
                w,
                "  network:      imds-shim itself runs behind {} (TAP device {}), and so does the \
                 command unless it starts containers elsewhere, whatever --topology {} says",
                stack.name, n.interface, ctx.topology
            );
        }
    }
    match &ctx.need {
        Some((need, source)) if stack.as_ref().is_some_and(|s| s.routed_before.is_none()) => {
            let _ = writeln!(
                w,
                "  needs:        hop limit {need} for {} (from {source}), not where imds-shim runs",
                ctx.topology
            );
        }
        Some((need, source)) => {
            let _ = writeln!(w, "  needs:        hop limit {need} (from {source})");
        }
        None => {
            let _ = writeln!(
                w,
                "  needs:        unknown (no baseline entry for {})",
                ctx.topology
            );
        }
    }
    let instance = ctx.instance_id.as_deref().unwrap_or("<instance-id>");
    match (ctx.current, &ctx.check_error) {
        (Some(current), _) => {
            let _ = writeln!(w, "  instance:     {instance} has hop limit {current}");
        }
        (None, Some(error)) => {
            let _ = writeln!(w, "  instance:     hop limit unknown: {error}");
        }
        (None, None) => {
            let _ = writeln!(w, "  instance:     hop limit unknown (not checked)");
        }
    }
    let _ = writeln!(w);
    let need = ctx.need.as_ref().map(|(n, _)| *n);
    let enough = match (need, ctx.current) {
        (Some(need), Some(current)) if current >= need => Some(current),
        _ => None,
    };
    let why = match (stack, enough) {
        (Some(stack), None) if stack.routed_before.unwrap_or(0) > 0 => {
            let n = stack.routed_before.unwrap_or(0);
            Why::StackBehindHops(stack, n)
        }
        (Some(stack), _) => Why::StackNotTheCause(stack),
        (None, Some(current)) => Why::Enough(current),
        (None, None) => Why::Routed,
    };
    match &why {
        Why::StackNotTheCause(stack) => not_the_hop_limit_behind_a_stack(w, stack, ctx),
        Why::Enough(current) => {
            let _ = writeln!(
                w,
                "Why: not the hop limit, most likely: {current} is enough for {}. Check that the build \
                 does not turn IMDS off (AWS_EC2_METADATA_DISABLED), that the instance has a role, and \
                 that the build does not run deeper than {} (try --topology).",
                ctx.topology, ctx.topology
            );
        }
        Why::StackBehindHops(_, _) | Why::Routed => {
            if let Why::StackBehindHops(stack, n) = &why {
                stack_behind_routing_hops(w, stack, *n);
            } else {
                let _ = writeln!(
                    w,
                    "Why: IMDSv2 sends its token response with the instance's hop limit as IP TTL, and every \
                     routing hop between the host and the build lowers it by one; a build D hops away needs \
                     hop limit D + 1, and below that the token is dropped on the way."
                );
            }
            let _ = writeln!(w, "{}", client_note(failure.client));
            let _ = writeln!(w);
            match need {
                Some(need) => {
                    let _ = writeln!(
                        w,
                        "Fix, on the instance (the smallest value that works; every extra hop exposes the role further):"
                    );
                    let _ = writeln!(w, "  {}", FixCommand::hop_limit(instance, need));
                    let how = match &ctx.need {
                        Some((n, NeedSource::Flag)) => format!("--need {n}"),
                        Some((_, NeedSource::File(_) | NeedSource::Embedded)) | None => {
                            format!("--topology {}", ctx.topology)
                        }
                    };
                    let _ = writeln!(w, "  or: imds-shim enforce {how} --apply");
                }
                None => {
                    let _ = writeln!(
                        w,
                        "Fix: measure the topology with `imds-harness measure --record`, then `imds-shim enforce --apply`."
                    );
                }
            }
        }
    }
    // Seen from imds-shim's own place behind a stack, --topology was not where the build ran.
    let topology_applies = !matches!(&why, Why::StackNotTheCause(s) if s.routed_before.is_none());
    if let Some(caveat) = run_with_aws(&ctx.topology).filter(|_| topology_applies) {
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "Or, without changing the instance (Earthly): let the Earthly CLI on the host fetch the \
             credentials and pass them to the step. Start the Earthfile with"
        );
        let _ = writeln!(w, "  VERSION --run-with-aws 0.8");
        let _ = writeln!(w, "and give the step the flag:");
        let _ = writeln!(w, "  RUN --aws aws sts get-caller-identity");
        if !caveat.is_empty() {
            let _ = writeln!(w, "{caveat}");
        }
    } else if ctx.earthly_command && topology_applies {
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "The command is Earthly, but --topology {} is not an Earthly RUN step, where `RUN --aws` \
             would help; if the failure was in a RUN step, run this with --topology earthly-run.",
            ctx.topology
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    use imds_vocab::Preset;

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    fn earthly_ctx() -> Context {
        Context {
            topology: Preset::EarthlyRun.into(),
            need: Some((hop(3), NeedSource::File("fixtures/hop-limits.toml".into()))),
            current: Some(hop(2)),
            instance_id: Some("i-0123456789abcdef0".into()),
            check_error: None,
            earthly_command: true,
            network: None,
        }
    }

    fn ctx(topology: &str, need: Option<u32>, current: Option<u32>) -> Context {
        Context {
            topology: Topology::parse(topology).unwrap(),
            need: need.map(|n| (hop(n), NeedSource::Embedded)),
            current: current.map(hop),
            instance_id: current.map(|_| "i-0123456789abcdef0".into()),
            check_error: None,
            earthly_command: false,
            network: None,
        }
    }

    const CLI_SAYS: &str =
        "Unable to locate credentials. You can configure credentials by running \"aws configure\".";

    #[test]
    fn aws_cli_in_a_gitlab_dind_build_needs_3() {
        let text = render(
            &failure(Client::Cli, CLI_SAYS),
            &ctx("gitlab-dind-build", Some(3), Some(2)),
        );
        assert!(text.contains("--http-put-response-hop-limit 3"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn aws_cli_in_podman_rootless_is_not_the_hop_limit() {
        let text = render(
            &failure(Client::Cli, CLI_SAYS),
            &ctx("podman-rootless", Some(1), Some(1)),
        );
        assert!(
            text.contains("Why: not the hop limit. The build reaches IMDS through slirp4netns"),
            "{text}"
        );
        assert!(!text.contains("modify-instance-metadata-options"), "{text}");
        assert!(!text.contains("enforce"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn rust_sdk_in_podman_rootless_pasta_with_the_check_failed() {
        // The hop limit is unknown: still not the cause, and no fix that raises it.
        let mut c = ctx("podman-rootless-pasta", Some(1), None);
        c.check_error = Some("cannot check: IMDS did not answer".into());
        let text = render(
            &failure(
                Client::RustSdk,
                "Error: failed to load credentials from IMDS",
            ),
            &c,
        );
        assert!(
            text.contains("through pasta, a user-space network stack"),
            "{text}"
        );
        assert!(!text.contains("--http-put-response-hop-limit"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_stack_behind_a_routing_hop_needs_2() {
        let text = render(
            &failure(Client::GoSdkV2, "no EC2 IMDS role found"),
            &ctx("chain:rp", Some(2), Some(1)),
        );
        assert!(
            text.contains("a user-space network stack that runs 1 routing hop from the host"),
            "{text}"
        );
        assert!(text.contains("--http-put-response-hop-limit 2"), "{text}");
        insta::assert_snapshot!(text);
        // With the hop limit enough for the hop before the stack: not the cause.
        let text = render(
            &failure(Client::GoSdkV2, "no EC2 IMDS role found"),
            &ctx("chain:rp", Some(2), Some(2)),
        );
        assert!(text.contains("the stack runs 1 routing hop from the host, and the instance's hop limit (2) covers them"), "{text}");
        assert!(!text.contains("--http-put-response-hop-limit"), "{text}");
        // Routed layers behind the stack do not count: chain:pr needs 1.
        let text = render(
            &failure(Client::Cli, CLI_SAYS),
            &ctx("chain:pr", Some(1), None),
        );
        assert!(
            text.contains("the stack runs on the host (no routing hop before it), so 1 is enough"),
            "{text}"
        );
        assert!(!text.contains("--http-put-response-hop-limit"), "{text}");
    }

    #[test]
    fn a_stack_seen_from_imds_shims_own_place_overrides_a_routed_topology() {
        // imds-shim runs inside a rootless container; --topology was left at its default.
        let mut c = ctx("earthly-run", Some(3), Some(1));
        c.network = Some(NetworkDetail {
            kind: imds_vocab::report::NetworkKind::UserSpace,
            interface: "tap0".into(),
            gateway: Some("10.0.2.2".into()),
            gateway_mac: Some("52:55:0a:00:02:02".into()),
            stack: Some("slirp4netns".into()),
        });
        let text = render(&failure(Client::Cli, CLI_SAYS), &c);
        assert!(
            text.contains(
                "network:      imds-shim itself runs behind slirp4netns (TAP device tap0)"
            ),
            "{text}"
        );
        assert!(
            text.contains("where the stack runs is not visible from here"),
            "{text}"
        );
        assert!(!text.contains("--http-put-response-hop-limit"), "{text}");
        assert!(!text.contains("RUN --aws"), "{text}");
        insta::assert_snapshot!(text);
        // A routed network of imds-shim's own changes nothing.
        c.network.as_mut().unwrap().kind = imds_vocab::report::NetworkKind::Routed;
        let text = render(&failure(Client::Cli, CLI_SAYS), &c);
        assert!(text.contains("--http-put-response-hop-limit 3"), "{text}");
        assert!(!text.contains("network:"), "{text}");
    }

    #[test]
    fn no_proxied_preset_is_ever_told_to_raise_the_hop_limit() {
        for &preset in Preset::VARIANTS {
            let topology = Topology::from(preset);
            for current in [None, Some(1)] {
                let c = ctx(
                    preset.name(),
                    Some(topology.min_hop_limit().get().into()),
                    current,
                );
                let text = render(&failure(Client::Cli, CLI_SAYS), &c);
                let raises = text.contains("--http-put-response-hop-limit");
                let expected = !topology.is_proxied()
                    && topology.min_hop_limit().get() > current.unwrap_or(0) as u8;
                assert_eq!(raises, expected, "{preset}, {current:?}: {text}");
            }
        }
    }

    fn failure(client: Client, evidence: &str) -> CredentialFailure {
        CredentialFailure {
            client,
            evidence: evidence.into(),
        }
    }

    #[test]
    fn aws_cli_in_an_earthly_run_step() {
        let f = failure(
            Client::Cli,
            "+probe | Unable to locate credentials. You can configure credentials by running \"aws configure\".",
        );
        insta::assert_snapshot!(render(&f, &earthly_ctx()));
    }

    #[test]
    fn rust_sdk_in_an_earthly_run_step() {
        let f = failure(
            Client::RustSdk,
            "+probe | Error: failed to load credentials from IMDS",
        );
        insta::assert_snapshot!(render(&f, &earthly_ctx()));
    }

    #[test]
    fn go_sdk_in_docker_run_with_the_check_failed() {
        let f = failure(
            Client::GoSdkV2,
            "failed to refresh cached credentials, no EC2 IMDS role found",
        );
        let ctx = Context {
            topology: Preset::DockerRun.into(),
            need: Some((hop(2), NeedSource::Flag)),
            current: None,
            instance_id: None,
            check_error: Some("cannot check: IMDS is turned off here (AWS_EC2_METADATA_DISABLED=true); run this on the EC2 host itself".into()),
            earthly_command: false,
            network: None,
        };
        insta::assert_snapshot!(render(&f, &ctx));
    }

    #[test]
    fn enough_hop_limit_points_elsewhere() {
        let f = failure(Client::Cli, "Unable to locate credentials.");
        let ctx = Context {
            current: Some(hop(3)),
            ..earthly_ctx()
        };
        let text = render(&f, &ctx);
        assert!(
            text.contains("Why: not the hop limit, most likely: 3 is enough for earthly-run."),
            "{text}"
        );
        assert!(!text.contains("modify-instance-metadata-options"), "{text}");
        assert!(text.contains("RUN --aws"), "{text}");
    }

    #[test]
    fn run_aws_is_offered_exactly_in_earthly_run_steps() {
        let f = failure(Client::GoSdkV2, "no EC2 IMDS role found");
        for (preset, offered, passed_on) in [
            (Preset::Host, false, false),
            (Preset::DockerRun, false, false),
            (Preset::BuildkitRun, false, false),
            (Preset::EarthlyRun, true, false),
            (Preset::EarthlyCni, true, false),
            (Preset::EarthlyWithDocker, true, true),
        ] {
            let ctx = Context {
                topology: preset.into(),
                earthly_command: false,
                ..earthly_ctx()
            };
            let text = render(&f, &ctx);
            assert_eq!(text.contains("RUN --aws"), offered, "{preset:?}: {text}");
            assert_eq!(
                text.contains("docker run -e AWS_ACCESS_KEY_ID"),
                passed_on,
                "{preset:?}"
            );
        }
        // Earthly, but the failure was not in a RUN step (LOCALLY, on the host).
        let ctx = Context {
            topology: Preset::Host.into(),
            ..earthly_ctx()
        };
        let text = render(&f, &ctx);
        assert!(!text.contains("RUN --aws aws"), "{text}");
        assert!(
            text.contains("--topology host is not an Earthly RUN step"),
            "{text}"
        );
    }

    #[test]
    fn each_client_is_named_with_what_it_does() {
        for (client, says) in [
            (
                Client::GoSdkV2,
                "The AWS SDK for Go v2 falls back to IMDSv1",
            ),
            (
                Client::GoSdkV1,
                "The AWS SDK for Go v1 falls back to IMDSv1",
            ),
            (Client::RubySdk, "The AWS SDK for Ruby falls back to IMDSv1"),
            (
                Client::Boto3,
                "boto3 (botocore, as the AWS CLI) falls back to IMDSv1",
            ),
            (Client::RustSdk, "never falls back to IMDSv1"),
        ] {
            let text = render(&failure(client, "x"), &earthly_ctx());
            assert!(
                text.contains(&format!("said by:      {} (x)", client.description())),
                "{text}"
            );
            assert!(text.contains(says), "{text}");
        }
    }
}

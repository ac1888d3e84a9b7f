//! What to tell the user when a wrapped command failed for want of credentials: where it ran,
//! the hop limit it needs and the instance's, the fix, and for Earthly the alternative that
//! changes nothing on the instance.

use std::fmt::Write as _;

use imds_vocab::fix::FixCommand;
use imds_vocab::{HopLimit, Preset, Topology};

use super::classify::{Client, CredentialFailure};
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
        }
    }
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
        failure.client.name(),
        failure.evidence
    );
    let _ = writeln!(w, "  where:        {}", ctx.topology.where_it_runs());
    match &ctx.need {
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
    match (need, ctx.current) {
        (Some(need), Some(current)) if current >= need => {
            let _ = writeln!(
                w,
                "Why: not the hop limit, most likely: {current} is enough for {}. Check that the build \
                 does not turn IMDS off (AWS_EC2_METADATA_DISABLED), that the instance has a role, and \
                 that the build does not run deeper than {} (try --topology).",
                ctx.topology, ctx.topology
            );
        }
        _ => {
            let _ = writeln!(
                w,
                "Why: IMDSv2 sends its token response with the instance's hop limit as IP TTL, and every \
                 routing hop between the host and the build lowers it by one; a build D hops away needs \
                 hop limit D + 1, and below that the token is dropped on the way."
            );
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
                        _ => format!("--topology {}", ctx.topology),
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
    if let Some(caveat) = run_with_aws(&ctx.topology) {
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
    } else if ctx.earthly_command {
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
                text.contains(&format!("said by:      {} (x)", client.name())),
                "{text}"
            );
            assert!(text.contains(says), "{text}");
        }
    }
}

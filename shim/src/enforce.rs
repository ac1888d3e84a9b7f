//! `imds-shim enforce`: set the instance's metadata options to exactly what the builds need —
//! hop limit = the need, tokens required, endpoint enabled. Dry run unless `--apply`; with it,
//! `ModifyInstanceMetadataOptions`, a bounded wait for `applied`, then a check from here with the
//! TTL probe and a token fetch.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use imds_vocab::fix::FixCommand;
use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, MetadataState};

use crate::baseline::Need;
use crate::fleet::origin::{self, Origin};
use crate::instance::{Instance, InstanceError, MetadataOptions};
use crate::probe::{self, render, Place, ProbeOptions};

/// How often to ask whether the change is applied.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long to wait for `applied`.
pub(crate) const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One field to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The EC2 field name.
    pub field: &'static str,
    /// Its value now.
    pub from: String,
    /// Its value after.
    pub to: String,
}

/// The changes that bring `current` to the need; empty when none is needed.
pub fn plan(current: &MetadataOptions, need: HopLimit) -> Vec<Change> {
    let wanted = [
        (
            "HttpPutResponseHopLimit",
            current.hop_limit.to_string(),
            need.to_string(),
        ),
        (
            "HttpTokens",
            current.http_tokens.to_string(),
            HttpTokens::Required.to_string(),
        ),
        (
            "HttpEndpoint",
            current.http_endpoint.to_string(),
            HttpEndpoint::Enabled.to_string(),
        ),
    ];
    wanted
        .into_iter()
        .filter(|(_, from, to)| from != to)
        .map(|(field, from, to)| Change { field, from, to })
        .collect()
}

/// The plan as text, with the AWS CLI command that makes it.
pub(crate) fn render_plan(instance_id: &str, need: &Need, changes: &[Change]) -> String {
    let mut out = format!(
        "instance {instance_id}: {} needs hop limit {} (from {})\n",
        need.topology, need.hop_limit, need.source
    );
    if let Some(why) = crate::baseline::user_space_why(&need.topology) {
        let _ = writeln!(out, "  why: {why}");
    }
    if changes.is_empty() {
        out.push_str(
            "no change needed: the hop limit is exactly the need, tokens are required and the endpoint is enabled\n",
        );
        return out;
    }
    for c in changes {
        let _ = writeln!(out, "  {:<24} {} -> {}", c.field, c.from, c.to);
    }
    let _ = writeln!(
        out,
        "the same with the AWS CLI:\n  {}",
        FixCommand::hop_limit(instance_id, need.hop_limit).with_http_tokens(HttpTokens::Required)
    );
    out
}

/// What `enforce` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnforceOutcome {
    /// Nothing to change.
    NoChange,
    /// Dry run: the plan was printed.
    DryRun,
    /// Applied and verified from here.
    Applied,
    /// Applied, but the verification from here failed.
    VerifyFailed,
}

/// Runs `enforce`, printing as it goes.
pub async fn enforce(
    place: &Place,
    need: &Need,
    apply: bool,
    timeout: Duration,
) -> Result<EnforceOutcome, InstanceError> {
    let instance = Instance::discover(place, timeout).await?;
    let ec2 = instance.ec2().await;
    let (current, tags) = instance.describe_with_tags(&ec2).await?;
    let changes = plan(&current, need.hop_limit);
    print!("{}", render_plan(&instance.instance_id, need, &changes));
    for note in origin::notes(&ec2, &Origin::from_tags(&tags), need).await {
        println!("{note}");
    }
    if changes.is_empty() {
        return Ok(EnforceOutcome::NoChange);
    }
    if !apply {
        println!("dry run: nothing changed; run again with --apply to make this change");
        return Ok(EnforceOutcome::DryRun);
    }
    instance.modify(&ec2, need.hop_limit).await?;
    println!("ModifyInstanceMetadataOptions sent; waiting for the change to be applied");
    let started = Instant::now();
    loop {
        let now = instance.describe(&ec2).await?;
        if now.state == MetadataState::Applied {
            if now.hop_limit != need.hop_limit {
                return Err(InstanceError::AppliedOtherwise {
                    now: now.hop_limit,
                    wanted: need.hop_limit,
                });
            }
            println!(
                "applied after {:.1} s: hop limit {}, tokens {}, endpoint {}",
                started.elapsed().as_secs_f64(),
                now.hop_limit,
                now.http_tokens,
                now.http_endpoint
            );
            break;
        }
        if started.elapsed() >= APPLY_TIMEOUT {
            return Err(InstanceError::NotApplied {
                state: now.state,
                after: APPLY_TIMEOUT,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let opts = ProbeOptions {
        timeout,
        ..ProbeOptions::default()
    };
    let report = probe::reachability(&opts, place).await;
    print!("verification from here:\n{}", render::human(&report));
    Ok(if report.ok {
        EnforceOutcome::Applied
    } else {
        EnforceOutcome::VerifyFailed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::NeedSource;
    use imds_vocab::Preset;

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    fn options(hop_limit: u32, tokens: HttpTokens, endpoint: HttpEndpoint) -> MetadataOptions {
        MetadataOptions {
            hop_limit: hop(hop_limit),
            http_tokens: tokens,
            http_endpoint: endpoint,
            state: MetadataState::Applied,
        }
    }

    #[test]
    fn plan_is_empty_when_everything_matches() {
        let current = options(3, HttpTokens::Required, HttpEndpoint::Enabled);
        assert!(plan(&current, hop(3)).is_empty());
        let disabled = options(3, HttpTokens::Required, HttpEndpoint::Disabled);
        assert_eq!(plan(&disabled, hop(3)).len(), 1);
    }

    #[test]
    fn plan_names_every_field_that_differs() {
        let changes = plan(
            &options(5, HttpTokens::Optional, HttpEndpoint::Enabled),
            hop(3),
        );
        assert_eq!(
            changes,
            [
                Change {
                    field: "HttpPutResponseHopLimit",
                    from: "5".into(),
                    to: "3".into()
                },
                Change {
                    field: "HttpTokens",
                    from: "optional".into(),
                    to: "required".into()
                },
            ]
        );
        let need = Need {
            topology: Preset::EarthlyRun.into(),
            hop_limit: hop(3),
            source: NeedSource::Flag,
        };
        let text = render_plan("i-0123456789abcdef0", &need, &changes);
        assert_eq!(
            text,
            "instance i-0123456789abcdef0: earthly-run needs hop limit 3 (from --need)\n  \
             HttpPutResponseHopLimit  5 -> 3\n  \
             HttpTokens               optional -> required\n\
             the same with the AWS CLI:\n  aws ec2 modify-instance-metadata-options --instance-id i-0123456789abcdef0 \
             --http-put-response-hop-limit 3 --http-tokens required --http-endpoint enabled\n"
        );
        assert!(render_plan("i-0123456789abcdef0", &need, &[]).contains("no change needed"));
    }

    #[test]
    fn podman_rootless_is_set_to_1_and_says_why() {
        let need = Need {
            topology: Preset::PodmanRootless.into(),
            hop_limit: hop(1),
            source: NeedSource::Embedded,
        };
        let changes = plan(
            &options(2, HttpTokens::Required, HttpEndpoint::Enabled),
            need.hop_limit,
        );
        let text = render_plan("i-0123456789abcdef0", &need, &changes);
        assert_eq!(
            text,
            "instance i-0123456789abcdef0: podman-rootless needs hop limit 1 (from the baseline built into imds-shim (fixtures/hop-limits.toml))\n  \
             why: in a rootless Podman container behind slirp4netns, a user-space network stack (no routing hop before a user-space network stack): \
             slirp4netns re-sends the token response from the namespace it runs in, and no routing hop lies between the host and the stack: hop limit 1 is enough; \
             a higher hop limit would not help these builds, and would let containers on routed networks (docker0, CNI bridges) take the instance role\n  \
             HttpPutResponseHopLimit  2 -> 1\n\
             the same with the AWS CLI:\n  aws ec2 modify-instance-metadata-options --instance-id i-0123456789abcdef0 \
             --http-put-response-hop-limit 1 --http-tokens required --http-endpoint enabled\n"
        );
    }
}

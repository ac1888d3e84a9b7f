//! `imds-shim check`: does the instance's hop limit match what the builds need?
//!
//! Exit 0 when it matches, 1 when it is too low (builds will get no credentials), 3 when it is
//! higher than needed (builds work, but the role is exposed to containers further away).

use std::time::Duration;

use imds_vocab::fix::FixCommand;
use imds_vocab::{HopLimit, HttpTokens};

use crate::baseline::Need;
use crate::fence::Survey;
use crate::instance::{Instance, InstanceError, MetadataOptions};
use crate::probe::Place;

/// How the instance's hop limit compares with the need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly the need.
    Matches,
    /// Lower: builds in the topology get no token.
    TooLow,
    /// Higher: builds work, but more containers reach the role than need to.
    TooHigh,
}

impl Verdict {
    /// Compares `current` with `need`.
    pub fn of(current: HopLimit, need: HopLimit) -> Self {
        match current.cmp(&need) {
            std::cmp::Ordering::Equal => Self::Matches,
            std::cmp::Ordering::Less => Self::TooLow,
            std::cmp::Ordering::Greater => Self::TooHigh,
        }
    }

    /// The exit status of `imds-shim check`.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Matches => 0,
            Self::TooLow => 1,
            Self::TooHigh => 3,
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The instance.
    pub instance_id: String,
    /// Its region.
    pub region: String,
    /// Its metadata options.
    pub options: MetadataOptions,
    /// What the builds need.
    pub need: Need,
    /// For builds behind a user-space stack: whether a fence keeps them from IMDS.
    pub fence: Option<Survey>,
}

impl CheckOutcome {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.options.hop_limit, self.need.hop_limit)
    }

    /// The one-line verdict, the fix, and notes; ends with a newline.
    pub fn render(&self) -> String {
        let Self {
            instance_id,
            options,
            need,
            ..
        } = self;
        let (current, wanted, topology) = (options.hop_limit, need.hop_limit, &need.topology);
        let source = &need.source;
        let mut out = match self.verdict() {
            Verdict::Matches => format!(
                "ok: instance {instance_id} has hop limit {current}, exactly what {topology} needs (from {source})\n\
                 no change needed\n"
            ),
            Verdict::TooLow => format!(
                "too low: instance {instance_id} has hop limit {current}, {topology} needs {wanted} (from {source}): \
                 builds there get no IMDSv2 token and fail with `Unable to locate credentials`\n\
                 fix: {}\n",
                FixCommand::hop_limit(instance_id, wanted)
            ),
            Verdict::TooHigh => format!(
                "higher than needed: instance {instance_id} has hop limit {current}, {topology} needs only {wanted} (from {source}): \
                 builds work, but containers up to {} routing hops away can take the instance role's credentials\n\
                 fix: {}\n",
                current.routing_hops_reached(),
                FixCommand::hop_limit(instance_id, wanted)
            ),
        };
        if let Some(why) = crate::baseline::user_space_why(topology) {
            out.push_str(&format!("note: {topology} is {why}\n"));
        }
        if let Some(fence) = &self.fence {
            out.push_str(&format!("note: {}\n", fence.note()));
        }
        if options.http_tokens != HttpTokens::Required {
            out.push_str(&format!(
                "note: HttpTokens is {}: IMDSv1 answers at any depth whatever the hop limit; \
                 `imds-shim enforce --apply` also sets it to required\n",
                options.http_tokens
            ));
        }
        out
    }
}

/// Reads the instance's metadata options and compares them with `need`.
pub async fn check(
    place: &Place,
    need: Need,
    timeout: Duration,
) -> Result<CheckOutcome, InstanceError> {
    let instance = Instance::discover(place, timeout).await?;
    let ec2 = instance.ec2().await;
    let options = instance.describe(&ec2).await?;
    let fence = crate::baseline::user_space_why(&need.topology).map(|_| Survey::of_this_host());
    Ok(CheckOutcome {
        instance_id: instance.instance_id,
        region: instance.region,
        options,
        need,
        fence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::NeedSource;
    use imds_vocab::{HttpEndpoint, MetadataState, Preset};

    fn hop(n: u32) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    #[test]
    fn podman_rootless_needs_1_and_says_why() {
        let mut o = outcome(1, HttpTokens::Required);
        o.need.topology = Preset::PodmanRootless.into();
        o.need.hop_limit = hop(1);
        let text = o.render();
        assert!(
            text.starts_with(
                "ok: instance i-0123456789abcdef0 has hop limit 1, exactly what podman-rootless needs"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\nnote: podman-rootless is in a rootless Podman container behind slirp4netns"
            ),
            "{text}"
        );
        assert!(text.contains("hop limit 1 is enough; a higher hop limit would not help"));
        o.options.hop_limit = hop(2);
        let text = o.render();
        assert!(text.starts_with("higher than needed: instance i-0123456789abcdef0 has hop limit 2, podman-rootless needs only 1"), "{text}");
        assert!(
            text.contains("--http-put-response-hop-limit 1 --http-endpoint enabled\n"),
            "{text}"
        );
        // Routed topologies get no such note.
        assert!(!outcome(3, HttpTokens::Required).render().contains("note:"));
        // Behind a stack, what the fence is.
        o.fence = Some(Survey::Nobody);
        assert!(o.render().ends_with(
            "note: no `imds-shim fence` covers any user here: builds behind a user-space network \
             stack reach IMDS at hop limit 1 and get the instance role without a grant; fence the \
             user that runs them (rootless Podman or Docker) on this host with `imds-shim fence \
             --user NAME --apply`, and give the builds a grant of `imds-shim relay`\n"
        ), "{}", o.render());
    }

    fn outcome(current: u32, tokens: HttpTokens) -> CheckOutcome {
        CheckOutcome {
            instance_id: "i-0123456789abcdef0".into(),
            region: "us-east-1".into(),
            options: MetadataOptions {
                hop_limit: hop(current),
                http_tokens: tokens,
                http_endpoint: HttpEndpoint::Enabled,
                state: MetadataState::Applied,
            },
            need: Need {
                topology: Preset::EarthlyRun.into(),
                hop_limit: hop(3),
                source: NeedSource::File("fixtures/hop-limits.toml".into()),
            },
            fence: None,
        }
    }

    #[test]
    fn verdicts_and_exit_codes() {
        assert_eq!(Verdict::of(hop(3), hop(3)).exit_code(), 0);
        assert_eq!(Verdict::of(hop(2), hop(3)).exit_code(), 1);
        assert_eq!(Verdict::of(hop(5), hop(3)).exit_code(), 3);
    }

    #[test]
    fn rendered_verdicts() {
        assert_eq!(
            outcome(3, HttpTokens::Required).render(),
            "ok: instance i-0123456789abcdef0 has hop limit 3, exactly what earthly-run needs (from fixtures/hop-limits.toml)\n\
             no change needed\n"
        );
        assert_eq!(
            outcome(2, HttpTokens::Required).render(),
            "too low: instance i-0123456789abcdef0 has hop limit 2, earthly-run needs 3 (from fixtures/hop-limits.toml): \
             builds there get no IMDSv2 token and fail with `Unable to locate credentials`\n\
             fix: aws ec2 modify-instance-metadata-options --instance-id i-0123456789abcdef0 --http-put-response-hop-limit 3 --http-endpoint enabled\n"
        );
        let high = outcome(5, HttpTokens::Optional).render();
        assert!(high.starts_with("higher than needed: instance i-0123456789abcdef0 has hop limit 5, earthly-run needs only 3"), "{high}");
        assert!(high.contains("up to 4 routing hops away"), "{high}");
        assert!(high.contains("--http-put-response-hop-limit 3 --http-endpoint enabled\n"));
        assert!(high.ends_with("note: HttpTokens is optional: IMDSv1 answers at any depth whatever the hop limit; `imds-shim enforce --apply` also sets it to required\n"));
    }
}

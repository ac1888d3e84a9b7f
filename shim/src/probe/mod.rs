//! The probe: does the place this runs in (host, container, build step) get the instance role's
//! credentials, and if not, why not?
//!
//! Four steps, each timed and reported on its own:
//! 1. [`ttl`]: the hop limit this place needs, from TCP connects with a set IP TTL.
//! 2. [`token`]: an IMDSv2 token, the instance id and region, through the aws-config IMDS client.
//! 3. [`credentials`]: the role's credentials through aws-config's `ImdsCredentialsProvider`.
//! 4. [`identity`]: `sts:GetCallerIdentity` with those credentials.
//!
//! Then [`network`] reads (only reads: no packet) what this place's files say about its
//! route to IMDS: routed, or through a user-space network stack.

pub mod clients;
pub mod credentials;
pub mod diagnosis;
pub mod identity;
pub mod network;
pub mod render;
pub mod token;
pub mod ttl;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::endpoint::{region_from_env, EndpointError, ImdsConfig};
use credentials::RoleCredentials;
use diagnosis::ImdsFailure;
use identity::IdentityError;
use imds_vocab::report::{CredentialsDetail, IdentityDetail, TokenDetail};
pub use imds_vocab::report::{ProbeReport, Step, Steps, TtlDetail};

/// How to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Which steps to run.
    pub steps: Steps,
    /// IMDS connect and read timeout; also the bound of each TTL attempt.
    pub timeout: Duration,
    /// The largest TTL to try.
    pub ttl_max: u8,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            steps: Steps::All,
            timeout: Duration::from_secs(1),
            ttl_max: 64,
        }
    }
}

/// What this place's environment says about IMDS and the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// IMDS endpoint and whether it is turned off.
    pub imds: ImdsConfig,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
}

impl Place {
    /// Reads the place's configuration through `lookup` (the process environment, or a map).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EndpointError> {
        Ok(Self {
            imds: ImdsConfig::from_env(&lookup)?,
            region: region_from_env(&lookup),
        })
    }
}

/// Runs the chosen steps in order and reports each.
pub async fn run(opts: &ProbeOptions, place: &Place) -> ProbeReport {
    let mut report = ProbeReport::new(place.imds.endpoint.url());
    let mut resolved = None;
    if matches!(opts.steps, Steps::Ttl | Steps::All) {
        let (step, addr) = ttl_step(opts, place).await;
        report.ttl = Some(step);
        resolved = addr;
    }
    if matches!(opts.steps, Steps::Sdk | Steps::All) {
        if opts.steps == Steps::All || place.region.is_none() {
            report.token = Some(token_step(opts, place).await);
        }
        let (step, creds) = credentials_step(opts, place).await;
        report.credentials = Some(step);
        let region = place
            .region
            .clone()
            .or_else(|| report.token.as_ref().and_then(|t| t.detail.region.clone()));
        report.identity = Some(identity_step(region.as_deref(), creds.as_ref()).await);
    }
    // Last: the steps' traffic has put the next hop into the neighbour table.
    report.network = imds_address(place, resolved).and_then(network::detect);
    report.conclude();
    report
}

/// The IMDS address without a lookup: the endpoint's own, or what the TTL step resolved.
pub fn imds_address(place: &Place, resolved: Option<IpAddr>) -> Option<IpAddr> {
    place
        .imds
        .endpoint
        .literal_addr()
        .map(|a| a.ip())
        .or(resolved)
}

/// Steps 1 and 2 only: the hop limit this place needs and an IMDSv2 token, as `enforce` checks
/// after a change.
pub(crate) async fn reachability(opts: &ProbeOptions, place: &Place) -> ProbeReport {
    let mut report = ProbeReport::new(place.imds.endpoint.url());
    let (step, resolved) = ttl_step(opts, place).await;
    report.ttl = Some(step);
    report.token = Some(token_step(opts, place).await);
    report.network = imds_address(place, resolved).and_then(network::detect);
    report.conclude();
    report
}

async fn ttl_step(opts: &ProbeOptions, place: &Place) -> (Step<TtlDetail>, Option<IpAddr>) {
    let start = Instant::now();
    if place.imds.disabled {
        return (Step::failed(start.elapsed(), ImdsFailure::Disabled), None);
    }
    let endpoint = &place.imds.endpoint;
    let addr = match endpoint.resolve().await {
        Ok(addr) => addr,
        Err(e) => {
            let err = ttl::TtlError::Resolve {
                host: endpoint.host().to_owned(),
                reason: e.to_string(),
            };
            return (Step::failed(start.elapsed(), err), None);
        }
    };
    let result = ttl::hop_limit_needed(addr, opts.ttl_max, opts.timeout)
        .await
        .map(|k| TtlDetail {
            hop_limit_needed: Some(k),
        });
    (Step::from_result(start.elapsed(), result), Some(addr.ip()))
}

async fn token_step(opts: &ProbeOptions, place: &Place) -> Step<TokenDetail> {
    let start = Instant::now();
    if place.imds.disabled {
        return Step::failed(start.elapsed(), ImdsFailure::Disabled);
    }
    let conf = clients::provider_config();
    let result = match clients::imds_client(&place.imds.endpoint, opts.timeout, &conf) {
        Ok(client) => token::fetch(&client, opts.timeout).await,
        Err(e) => Err(e),
    };
    let elapsed = start.elapsed();
    Step::from_result(elapsed, confirm_drop(result, opts, place).await)
}

/// A token request that timed out blames the hop limit only if a TCP connection to IMDS can be
/// made: the SDK's connect and read timeouts are equal, so a silently dropped SYN may surface as
/// a read timeout.
async fn confirm_drop<T>(
    result: Result<T, ImdsFailure>,
    opts: &ProbeOptions,
    place: &Place,
) -> Result<T, ImdsFailure> {
    let Err(ImdsFailure::TokenDropped { timeout }) = result else {
        return result;
    };
    let connects = match place.imds.endpoint.resolve().await {
        Ok(addr) => !matches!(
            ttl::attempt(addr, MAX_TTL, opts.timeout).await,
            Err(ttl::AttemptError::TimedOut | ttl::AttemptError::Unreachable(_))
        ),
        Err(_) => true,
    };
    Err(if connects {
        ImdsFailure::TokenDropped { timeout }
    } else {
        ImdsFailure::ConnectTimeout { timeout }
    })
}

/// The largest IP TTL, for a connect that only asks whether IMDS can be reached at all.
const MAX_TTL: u8 = 255;

async fn credentials_step(
    opts: &ProbeOptions,
    place: &Place,
) -> (Step<CredentialsDetail>, Option<RoleCredentials>) {
    let start = Instant::now();
    if place.imds.disabled {
        return (Step::failed(start.elapsed(), ImdsFailure::Disabled), None);
    }
    let conf = clients::provider_config();
    let result = match clients::imds_client(&place.imds.endpoint, opts.timeout, &conf) {
        Ok(client) => credentials::fetch(client, &conf, opts.timeout).await,
        Err(e) => Err(e),
    };
    let elapsed = start.elapsed();
    match confirm_drop(result, opts, place).await {
        Ok(creds) => (
            Step::from_result::<ImdsFailure>(elapsed, Ok(creds.detail())),
            Some(creds),
        ),
        Err(e) => (Step::failed(elapsed, e), None),
    }
}

async fn identity_step(
    region: Option<&str>,
    creds: Option<&RoleCredentials>,
) -> Step<IdentityDetail> {
    let start = Instant::now();
    let result = match (creds, region) {
        (None, _) => Err(IdentityError::NoCredentials),
        (Some(_), None) => Err(IdentityError::NoRegion),
        (Some(creds), Some(region)) => identity::fetch(region, creds).await,
    };
    Step::from_result(start.elapsed(), result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{ENV_DISABLED, ENV_ENDPOINT};

    fn place(pairs: &[(&str, &str)]) -> Place {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Place::from_env(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap()
    }

    #[tokio::test]
    async fn disabled_imds_sends_nothing_and_says_so() {
        // The endpoint is a closed local port; with IMDS off nothing may connect to it anyway.
        let p = place(&[(ENV_DISABLED, "true"), (ENV_ENDPOINT, "http://127.0.0.1:9")]);
        let r = run(&ProbeOptions::default(), &p).await;
        assert!(!r.ok);
        for err in [
            r.ttl.as_ref().unwrap().error.as_deref(),
            r.token.as_ref().unwrap().error.as_deref(),
            r.credentials.as_ref().unwrap().error.as_deref(),
        ] {
            assert!(err.unwrap().contains("AWS_EC2_METADATA_DISABLED=true"));
        }
        assert_eq!(
            r.identity.unwrap().error.as_deref(),
            Some("not attempted: the credentials step got no credentials")
        );
    }

    #[tokio::test]
    async fn ttl_only_runs_one_step_against_a_local_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let opts = ProbeOptions {
            steps: Steps::Ttl,
            ..ProbeOptions::default()
        };
        let r = run(&opts, &place(&[(ENV_ENDPOINT, &url)])).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.endpoint, url);
        assert_eq!(r.hop_limit_needed(), Some(1));
        assert!(r.token.is_none() && r.credentials.is_none() && r.identity.is_none());
    }

    #[tokio::test]
    async fn refused_imds_fails_every_step_quickly() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("http://{addr}");
        let p = place(&[(ENV_ENDPOINT, &url), ("AWS_REGION", "us-east-1")]);
        let r = run(&ProbeOptions::default(), &p).await;
        assert!(!r.ok);
        let ttl_err = r.ttl.as_ref().unwrap().error.clone().unwrap();
        assert!(ttl_err.contains("connection refused"), "{ttl_err}");
        let token_err = r.token.as_ref().unwrap().error.clone().unwrap();
        assert!(
            token_err.starts_with("could not connect to IMDS"),
            "{token_err}"
        );
        let verdict = render::verdict(&r);
        assert!(
            verdict.starts_with("this place cannot get credentials: connection refused"),
            "{verdict}"
        );
    }

    #[tokio::test]
    async fn unanswered_token_request_is_reported_as_dropped() {
        // A listener that accepts and never answers: the token PUT gets no response, as when
        // the hop limit drops it. The connection itself succeeds, so the TTL step is ok.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let opts = ProbeOptions {
            timeout: Duration::from_millis(200),
            ..ProbeOptions::default()
        };
        let p = place(&[(ENV_ENDPOINT, &url), ("AWS_REGION", "us-east-1")]);
        let r = run(&opts, &p).await;
        hold.abort();
        assert_eq!(r.hop_limit_needed(), Some(1));
        let token = r.token.as_ref().unwrap();
        assert_eq!(
            token.error.as_deref(),
            Some("no token response within 0.2 s: the token response was most likely dropped by the instance's hop limit (HttpPutResponseHopLimit) before reaching this place")
        );
        assert!(
            token.elapsed_ms >= 200.0 && token.elapsed_ms < 2000.0,
            "{token:?}"
        );
        assert_eq!(r.credentials.as_ref().unwrap().error, token.error);
        assert!(
            render::verdict(&r).ends_with("before reaching this place; it needs hop limit >= 1")
        );
    }
}

//! The mock as a testcontainers module: the image `imds-harness/mock` (made by
//! `imds-harness images`, never pulled) started by testcontainers' runner, ready once
//! the mock has printed its endpoints line, removed by testcontainers when dropped (the
//! crate's documentation has an example).
//!
//! Reached from this host through a published port, the mock is zero routed hops away
//! (Docker's proxy re-originates the connection). Another container reaches it `N`
//! routed hops away only when the routers are really there (`tests/mock_container.rs`
//! puts one between them).

use std::borrow::Cow;
use std::future::Future;

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::{ContainerAsync, Image, TestcontainersError};

use imds_vocab::{HopLimit, HttpEndpoint, HttpTokens, Toggle};

use crate::imds::notices::{LifecycleState, SpotAction};
use crate::mock_aws::Endpoints;
use crate::ports::{EC2_PORT, IMDS_PORT, STS_PORT};

/// The repository of the mock's image.
const NAME: &str = "imds-harness/mock";
/// The tag that always names the current mock image.
const LATEST: &str = "latest";
/// Every service's port inside the container.
const PORTS: [ContainerPort; 3] = [
    ContainerPort::Tcp(IMDS_PORT),
    ContainerPort::Tcp(STS_PORT),
    ContainerPort::Tcp(EC2_PORT),
];

/// The mock's image with its settings; each `with_` method is the `imds-harness mock`
/// flag of the same name.
#[derive(Clone, Debug)]
pub struct ImdsMock {
    tag: String,
    flags: Vec<String>,
}

impl Default for ImdsMock {
    /// EC2's defaults for a new instance: hop limit 1, tokens required.
    fn default() -> Self {
        ImdsMock {
            tag: LATEST.to_string(),
            flags: Vec::new(),
        }
    }
}

impl ImdsMock {
    fn flag(mut self, name: &str, value: &impl ToString) -> Self {
        self.flags.push(format!("--{name}"));
        self.flags.push(value.to_string());
        self
    }

    /// `HttpPutResponseHopLimit`: the IP TTL of the token response.
    pub fn with_hop_limit(self, hop_limit: HopLimit) -> Self {
        self.flag("hop-limit", &hop_limit)
    }

    /// `HttpTokens`: `Required` (IMDSv2 only) or `Optional` (IMDSv1 too).
    pub fn with_http_tokens(self, tokens: HttpTokens) -> Self {
        self.flag("http-tokens", &tokens)
    }

    /// `HttpEndpoint`: `Disabled` answers 403 to everything.
    pub fn with_http_endpoint(self, endpoint: HttpEndpoint) -> Self {
        self.flag("http-endpoint", &endpoint)
    }

    /// `InstanceMetadataTags`: whether IMDS serves the instance's tags.
    pub fn with_instance_metadata_tags(self, toggle: Toggle) -> Self {
        self.flag("instance-metadata-tags", &toggle)
    }

    /// The instance role's name.
    pub fn with_role(self, role: &str) -> Self {
        self.flag("role", &role)
    }

    /// The account id (12 digits).
    pub fn with_account(self, account: &str) -> Self {
        self.flag("account", &account)
    }

    /// An instance tag.
    pub fn with_tag(self, key: &str, value: &str) -> Self {
        self.flag("tag", &format!("{key}={value}"))
    }

    /// A Spot interruption notice from the start.
    pub fn with_spot_action(self, action: SpotAction) -> Self {
        self.flag("spot-action", &action)
    }

    /// The instance in an Auto Scaling group, moving to `state`.
    pub fn with_lifecycle_state(self, state: LifecycleState) -> Self {
        self.flag("lifecycle-state", &state)
    }

    /// Another tag of the image than `latest` (e.g. a recipe tag `imds-harness images`
    /// printed).
    pub fn with_image_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }
}

impl Image for ImdsMock {
    fn name(&self) -> &str {
        NAME
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    /// The mock prints one JSON line, `{"ec2":..,"imds":..,"sts":..}`, once it serves.
    fn ready_conditions(&self) -> Vec<WaitFor> {
        vec![WaitFor::message_on_stdout("\"imds\":")]
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<Cow<'_, str>>> {
        self.flags.iter().map(String::as_str)
    }

    fn expose_ports(&self) -> &[ContainerPort] {
        &PORTS
    }
}

/// What a started mock container tells its test.
pub trait ImdsMockContainer {
    /// The services' URLs as this host reaches them (published ports).
    fn endpoints(&self) -> impl Future<Output = Result<Endpoints, TestcontainersError>> + Send;
}

impl ImdsMockContainer for ContainerAsync<ImdsMock> {
    async fn endpoints(&self) -> Result<Endpoints, TestcontainersError> {
        let host = match self.get_host().await? {
            url::Host::Domain(domain) if domain == "localhost" => "127.0.0.1".to_string(),
            host => host.to_string(),
        };
        let url = |port: u16| format!("http://{host}:{port}/");
        Ok(Endpoints {
            imds: url(self.get_host_port_ipv4(IMDS_PORT).await?),
            sts: url(self.get_host_port_ipv4(STS_PORT).await?),
            ec2: url(self.get_host_port_ipv4(EC2_PORT).await?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_the_mocks_flags() {
        let mock = ImdsMock::default()
            .with_hop_limit(HopLimit::new(2).unwrap())
            .with_http_tokens(HttpTokens::Optional)
            .with_tag("team", "builds")
            .with_lifecycle_state(LifecycleState::WarmedStopped);
        let cmd: Vec<String> = mock
            .cmd()
            .into_iter()
            .map(|c| c.into().into_owned())
            .collect();
        assert_eq!(
            cmd,
            [
                "--hop-limit",
                "2",
                "--http-tokens",
                "optional",
                "--tag",
                "team=builds",
                "--lifecycle-state",
                "Warmed:Stopped"
            ]
        );
        assert_eq!((mock.name(), mock.tag()), ("imds-harness/mock", "latest"));
        assert_eq!(mock.expose_ports().len(), 3);
    }
}

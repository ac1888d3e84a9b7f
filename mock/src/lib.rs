//! `imds-mock`: the AWS side of an EC2 instance, for the tests of whatever reads it.
//!
//! Three services share one simulated instance:
//!
//! - **IMDS**, the instance metadata service: session tokens (IMDSv2), tokenless GETs
//!   (IMDSv1) only with `HttpTokens=optional`, the instance's identity and metadata,
//!   user data, its tags and notices (Spot interruption, rebalance recommendation, Auto
//!   Scaling lifecycle state, scheduled maintenance), and the instance role's temporary
//!   credentials: one set for IMDSv1 callers and another for IMDSv2 callers, so that a
//!   test can tell which path a client took.
//! - **STS** `GetCallerIdentity` and `AssumeRole`, SigV4-verified against the credentials
//!   the mock issued: the roles [`MockBuilder::assumable_role`] declares may be assumed
//!   (role chaining included), with session policies ([`PolicyDocument`]) and tags.
//! - **EC2**: `DescribeInstances` and `ModifyInstanceMetadataOptions` (the metadata
//!   options change at run time, without restarting a listener), a seeded fleet of
//!   build hosts, launch templates, the account's metadata defaults and throttling on
//!   demand; SigV4-verified too, and each action evaluated against the caller's
//!   effective permissions (its role's policy and its session policies; an explicit
//!   deny wins), refused with `UnauthorizedOperation`.
//!
//! # The hop limit is the token response's IP TTL
//!
//! The token response, and only it, leaves with an IP TTL (IPv6: unicast hop limit) of
//! the instance's `HttpPutResponseHopLimit`. Every router on the way back decrements it,
//! and at 0 the response is dropped: a client `D` routers away gets a token only with a
//! hop limit of at least `D + 1`, as on EC2. Nothing routes on loopback, so there any hop
//! limit reaches; to put a client hops away, put routers (network namespaces,
//! containers) between it and the mock.
//!
//! # Starting it
//!
//! [`MockAws::builder`] configures the instance (every setting not given is EC2's
//! default for a new instance: hop limit 1, tokens required) and
//! [`MockBuilder::start`] serves it, on 127.0.0.1 with free ports unless
//! [`MockBuilder::imds_addr`] and its siblings say otherwise, in the caller's Tokio
//! runtime. [`MockAws::start`] serves a [`MockConfig`] on listeners the caller bound
//! (inside a network namespace, say). The vocabulary of the metadata options
//! (`HopLimit`, `HttpTokens`, ...) is `imds_vocab`'s.
//!
//! Here a client under test, the Rust SDK, gets the role's credentials from the mock's
//! IMDS and its identity from the mock's STS:
//!
//! ```
//! # use aws_config::imds::credentials::ImdsCredentialsProvider;
//! # use aws_config::provider_config::ProviderConfig;
//! # use aws_config::{imds, BehaviorVersion, Region};
//! # use aws_smithy_http_client::Builder as HttpClientBuilder;
//! use imds_mock::{ImdsVersion, MockAws, Service};
//! use imds_vocab::{HopLimit, HttpTokens};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let mock = MockAws::builder()
//!     .hop_limit(HopLimit::new(2)?)
//!     .http_tokens(HttpTokens::Required)
//!     .role("build-role")
//!     .start()
//!     .await?;
//! let imds = &mock.endpoints().imds; // AWS_EC2_METADATA_SERVICE_ENDPOINT for your client
//!
//! // The client under test: its credentials from the mock's IMDS ...
//! let http = HttpClientBuilder::new().build_http();
//! let provider = ProviderConfig::without_region().with_http_client(http.clone());
//! let imds_client = imds::Client::builder()
//!     .configure(&provider)
//!     .endpoint(imds)?
//!     .build();
//! let credentials = ImdsCredentialsProvider::builder()
//!     .configure(&provider)
//!     .imds_client(imds_client)
//!     .build();
//! // ... and its identity from the mock's STS.
//! let config = aws_config::defaults(BehaviorVersion::latest())
//!     .http_client(http)
//!     .credentials_provider(credentials)
//!     .region(Region::new("us-east-1"))
//!     .endpoint_url(&mock.endpoints().sts)
//!     .load()
//!     .await;
//! let identity = aws_sdk_sts::Client::new(&config)
//!     .get_caller_identity()
//!     .send()
//!     .await?;
//! assert_eq!(
//!     identity.arn(),
//!     Some("arn:aws:sts::123456789012:assumed-role/build-role/i-0123456789abcdef0")
//! );
//!
//! // Change the options at run time, as ModifyInstanceMetadataOptions would.
//! mock.set_hop_limit(HopLimit::new(3)?);
//! assert_eq!(mock.options().hop_limit.get(), 3);
//!
//! // Read what happened.
//! let requests = mock.requests();
//! assert!(requests
//!     .iter()
//!     .any(|r| r.service == Service::Sts && r.signed_with == Some(ImdsVersion::V2)));
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # The request log
//!
//! [`MockAws::requests`] lists the requests answered so far, oldest first (the newest
//! [`RequestLog::CAPACITY`], within [`RequestLog::BYTE_BUDGET`] bytes): service, method,
//! path (cut to [`RequestLog::MAX_PATH`] bytes, and then marked `truncated`), status,
//! the peer's address, and for a signed API call which credential set signed it. No
//! header, body or query is kept, so nothing secret. [`MockAws::request_mark`] and
//! [`MockAws::requests_since`] give what came after a point; [`MockAws::events`] counts
//! tokens issued and credentials served by IMDS version.
//!
//! # As a container
//!
//! With the feature `testcontainers`, `ImdsMock` is the mock's image
//! (`imds-harness/mock`, made by `imds-harness images`, never pulled) as a
//! testcontainers `Image`, and `ImdsMockContainer` tells a started one's endpoints.
//! The container is removed when the value is dropped:
//!
//! ```no_run
//! # #[cfg(feature = "testcontainers")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use imds_mock::{ImdsMock, ImdsMockContainer};
//! use imds_vocab::HopLimit;
//! use testcontainers::runners::AsyncRunner;
//! use testcontainers::ImageExt;
//!
//! let mock = ImdsMock::default()
//!     .with_hop_limit(HopLimit::new(2)?)
//!     .with_role("ci-role")
//!     .with_label("imds-harness", "1") // optional: lets `imds-harness cleanup` find it
//!     .start()
//!     .await?;
//! let endpoints = mock.endpoints().await?; // IMDS, STS and EC2 URLs as this host reaches them
//! # Ok(())
//! # }
//! # fn main() {}
//! ```
//!
//! Reached from the host through a published port, the mock is zero routed hops away
//! at any hop limit: Docker's proxy ends the connection and opens a new one.

#![warn(missing_docs)]

mod admission;
mod body_limit;
mod builder;
mod config;
mod credentials;
mod ec2;
mod events;
mod iam;
mod imds;
mod imds_version;
mod instance;
mod mock_aws;
mod options;
mod organizations;
mod ports;
mod query;
mod request_log;
mod router;
mod server;
mod sigv4;
mod state;
mod sts;
#[cfg(feature = "testcontainers")]
mod testcontainer;
mod timestamp;

pub use builder::{MockBuilder, MockError};
pub use config::{FleetSpec, MockConfig, OrganizationSpec};
pub use ec2::fleet::{Fleet, FleetInstance, Generated};
pub use ec2::launch_template_data::{LaunchTemplateData, TemplateMetadataOptions};
pub use ec2::launch_templates::{LaunchTemplateSpec, LaunchTemplates};
pub use ec2::metadata_defaults::MetadataDefaults;
pub use events::EventCounts;
pub use iam::policy::{PolicyDocument, PolicyError};
pub use iam::principal::AssumedSession;
pub use iam::IamConfig;
pub use imds::notices::{
    LifecycleState, MaintenanceCode, MaintenanceEvent, NoticeValueError, Notices, SpotAction,
};
pub use imds_version::ImdsVersion;
pub use instance::InstanceIdentity;
pub use mock_aws::{Endpoints, Listeners, MockAws};
pub use options::{MetadataOptions, MetadataOptionsChange};
pub use organizations::model::{
    is_opt_in, Account, AccountStatus, JoinedMethod, ACCESS_ROLE, OPT_IN_REGIONS,
};
pub use ports::{EC2_PORT, IMDS_PORT, STS_PORT};
pub use request_log::{RequestLog, RequestMark, RequestRecord, Service};
#[cfg(feature = "testcontainers")]
pub use testcontainer::{ImdsMock, ImdsMockContainer};

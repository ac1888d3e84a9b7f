//! The mock's image used the way another project's tests would use it: started by
//! testcontainers, read by the Rust SDK from this host, and probed with the real AWS CLI
//! from a container beside it (zero hops: its bridge, or its published port) and from a
//! container one routed hop away, at hop limit 1 (no credentials) and 2.
//!
//! The topology (docs/mock.md, "Using the mock in your own tests"):
//!
//! ```text
//!   mock container ── network A ── router container ── network B ── client
//! ```
//!
//! The router forwards and masquerades; the client's only route (its default route is
//! removed, so it has no way out of this machine) goes through it to network A. That is one routed hop: the token response leaves the mock with TTL =
//! hop limit and the router takes one off.

use std::process::Command;
use std::time::Duration;

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::Builder as HttpClientBuilder;
use bollard::models::{NetworkConnectRequest, NetworkCreateRequest};
use imds_e2e::docker::images_command;
use imds_e2e::require::{require, Requirement};
use imds_harness::backend::docker::images::ImageKind;
use imds_harness::backend::docker::{LABEL, RUN_LABEL};
use imds_mock::{ImdsMock, ImdsMockContainer};
use imds_vocab::{HopLimit, HttpTokens};
use testcontainers::core::{CmdWaitFor, ExecCommand, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const NEEDS: &[Requirement] = &[Requirement::Root, Requirement::Docker];
const INSTANCE_ID: &str = "i-0123456789abcdef0";

/// The recipe tag `imds-harness images` printed for `kind`.
fn tag_of(images: &str, kind: ImageKind) -> (String, String) {
    let repository = kind.repository();
    let tag = images
        .split_whitespace()
        .find(|word| word.starts_with(&format!("{repository}:")))
        .unwrap_or_else(|| panic!("{repository} not in: {images}"));
    let (name, tag) = tag.split_once(':').unwrap();
    (name.to_string(), tag.to_string())
}

/// A labelled Docker network of this run, removed when dropped.
struct Network {
    docker: bollard::Docker,
    name: String,
}

impl Network {
    async fn create(docker: &bollard::Docker, name: String) -> Network {
        let run = imds_harness::lifecycle::run_id().unwrap();
        docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(
                    [
                        (LABEL.to_string(), "1".to_string()),
                        (RUN_LABEL.to_string(), run),
                    ]
                    .into_iter()
                    .collect(),
                ),
                ..Default::default()
            })
            .await
            .unwrap();
        Network {
            docker: docker.clone(),
            name,
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let (docker, name) = (self.docker.clone(), self.name.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = docker.remove_network(&name).await;
            });
        });
    }
}

/// The container's address on `network`.
async fn address_on(docker: &bollard::Docker, container: &str, network: &str) -> String {
    let inspected = docker.inspect_container(container, None).await.unwrap();
    inspected.network_settings.unwrap().networks.unwrap()[network]
        .ip_address
        .clone()
        .unwrap()
}

/// Runs `cmd` in `container` to its end: (exit code, stdout, stderr).
async fn exec<I: testcontainers::Image>(
    container: &ContainerAsync<I>,
    cmd: &[String],
    env: &[(String, String)],
) -> (i64, String, String) {
    let command = ExecCommand::new(cmd.iter().cloned())
        .with_env_vars(env.iter().cloned())
        .with_cmd_ready_condition(CmdWaitFor::exit());
    let mut result = container.exec(command).await.unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout_to_vec().await.unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr_to_vec().await.unwrap()).into_owned();
    (result.exit_code().await.unwrap().unwrap(), stdout, stderr)
}

/// A container of this run: labelled for `imds-harness cleanup`, named with the
/// project's prefix.
fn ours<I: testcontainers::Image>(
    image: I,
    role: &str,
    network: &str,
) -> testcontainers::ContainerRequest<I> {
    let run = imds_harness::lifecycle::run_id().unwrap();
    image
        .with_network(network)
        .with_container_name(format!("imdsh-{run}-tc-{role}"))
        .with_label(LABEL, "1")
        .with_label(RUN_LABEL, run)
}

/// `aws sts get-caller-identity` with the IMDS at `imds_url` and STS at `sts_url`, and
/// nothing else of a configuration: the command and its environment.
fn whoami(imds_url: &str, sts_url: &str) -> (Vec<String>, Vec<(String, String)>) {
    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1"),
    ];
    let cmd = [
        "aws",
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        sts_url,
    ];
    (
        cmd.map(String::from).to_vec(),
        env.map(|(k, v)| (k.to_string(), v.to_string())).to_vec(),
    )
}

/// A client container of `image` on `network`, its default route removed (from this
/// host, in its network namespace) and `via` = (subnet, router) added.
async fn client(
    docker: &bollard::Docker,
    image: GenericImage,
    role: &str,
    network: &str,
    via: Option<(&str, &str)>,
) -> ContainerAsync<GenericImage> {
    let container = ours(image, role, network)
        .with_cmd(["sleep", "infinity"])
        .start()
        .await
        .unwrap();
    let state = docker
        .inspect_container(container.id(), None)
        .await
        .unwrap()
        .state;
    let pid = state.unwrap().pid.unwrap().to_string();
    let mut routes = vec![vec!["del", "default"]];
    routes.extend(via.map(|(subnet, router)| vec!["add", subnet, "via", router]));
    for route in routes {
        let status = Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip", "route"])
            .args(route)
            .status()
            .unwrap();
        assert!(status.success());
    }
    container
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_tests_against_the_mock_container_one_routed_hop_away() {
    if !require("mock_container", NEEDS) {
        return;
    }
    let (images, _) = images_command(&[]);
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let run = imds_harness::lifecycle::run_id().unwrap();
    let net_a = Network::create(&docker, format!("imdsh-{run}-tc-a")).await;
    let net_b = Network::create(&docker, format!("imdsh-{run}-tc-b")).await;

    // The mock, as a user's project starts it.
    let mock = ours(
        ImdsMock::default().with_http_tokens(HttpTokens::Required),
        "mock",
        &net_a.name,
    )
    .start()
    .await
    .unwrap();
    let endpoints = mock.endpoints().await.unwrap();

    // From this host (a published port: Docker's proxy re-originates the connection,
    // so no routed hop): the Rust SDK gets the role's credentials at hop limit 1.
    let provider =
        ProviderConfig::without_region().with_http_client(HttpClientBuilder::new().build_http());
    let imds_client = imds::Client::builder()
        .configure(&provider)
        .endpoint(&endpoints.imds)
        .unwrap()
        .build();
    let credentials = imds::credentials::ImdsCredentialsProvider::builder()
        .configure(&provider)
        .imds_client(imds_client)
        .build()
        .provide_credentials()
        .await
        .unwrap();
    let config = |endpoint: &str| {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(HttpClientBuilder::new().build_http())
            .credentials_provider(credentials.clone())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .load()
    };
    let identity = aws_sdk_sts::Client::new(&config(&endpoints.sts).await)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(identity.arn().unwrap().contains(":assumed-role/"));

    // The router: on both networks, forwarding and masquerading.
    let (instance, instance_tag) = tag_of(&images, ImageKind::Instance);
    let router = ours(
        GenericImage::new(instance, instance_tag).with_wait_for(WaitFor::Nothing),
        "router",
        &net_a.name,
    )
    .with_cmd([
        "sh",
        "-c",
        "iptables -t nat -A POSTROUTING -j MASQUERADE && exec sleep infinity",
    ])
    .with_cap_add("NET_ADMIN")
    .with_host_config_modifier(|host| {
        host.sysctls = Some([("net.ipv4.ip_forward".into(), "1".into())].into());
    })
    .start()
    .await
    .unwrap();
    docker
        .connect_network(
            &net_b.name,
            NetworkConnectRequest {
                container: router.id().to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let router_on_b = address_on(&docker, router.id(), &net_b.name).await;

    // The clients: the probe image (Debian's AWS CLI), without a default route (no way
    // off this machine). One on network A, beside the mock; one on network B whose only
    // other route goes through the router to network A (Docker's internal networks
    // would drop the routed traffic, so B is a plain one without its default route).
    let (probe, probe_tag) = tag_of(&images, ImageKind::Probe);
    let probe = GenericImage::new(probe, probe_tag).with_wait_for(WaitFor::Nothing);
    let beside = client(&docker, probe.clone(), "beside", &net_a.name, None).await;
    let ipam_a = docker
        .inspect_network(&net_a.name, None)
        .await
        .unwrap()
        .ipam
        .unwrap()
        .config
        .unwrap()
        .remove(0);
    let (subnet_a, gateway_a) = (ipam_a.subnet.unwrap(), ipam_a.gateway.unwrap());
    let routed = client(
        &docker,
        probe,
        "routed",
        &net_b.name,
        Some((&subnet_a, &router_on_b)),
    )
    .await;

    let mock_ip = address_on(&docker, mock.id(), &net_a.name).await;
    let sts_url = format!("http://{mock_ip}:8080/");
    let direct = format!("http://{mock_ip}:80/");

    // Beside the mock, on its bridge: no routed hop, hop limit 1 is enough. Through the
    // mock's published port on network A's gateway: Docker's proxy re-originates the
    // connection, no routed hop either.
    let published = endpoints
        .imds
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/');
    for imds_url in [direct.clone(), format!("http://{gateway_a}:{published}/")] {
        let (cmd, env) = whoami(&imds_url, &sts_url);
        let (code, stdout, stderr) = exec(&beside, &cmd, &env).await;
        assert_eq!(code, 0, "{imds_url}: {stderr}");
        assert!(stdout.contains(":assumed-role/"), "{stdout}");
    }

    // Hop limit 1: the router drops the token response; tokens required, so nothing.
    let (cmd, env) = whoami(&direct, &sts_url);
    let (code, _, stderr) = exec(&routed, &cmd, &env).await;
    assert_ne!(code, 0, "at hop limit 1, one hop away, no credentials");
    assert!(stderr.contains("Unable to locate credentials"), "{stderr}");

    // Raised to 2 through the mock's EC2 API, as `aws ec2 modify-instance-metadata-options`
    // would: the same client now gets the role's identity.
    aws_sdk_ec2::Client::new(&config(&endpoints.ec2).await)
        .modify_instance_metadata_options()
        .instance_id(INSTANCE_ID)
        .http_put_response_hop_limit(HopLimit::new(2).unwrap().get().into())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, stdout, stderr) = exec(&routed, &cmd, &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(":assumed-role/"), "{stdout}");
    drop((routed, beside, router, mock));
}

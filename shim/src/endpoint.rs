//! Where IMDS is for this place, read from the same environment variables the AWS SDKs read.
//!
//! - `AWS_EC2_METADATA_SERVICE_ENDPOINT`: the endpoint URL, e.g. `http://127.0.0.1:8080`.
//! - `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`: `IPv4` (default, `http://169.254.169.254`) or
//!   `IPv6` (`http://[fd00:ec2::254]`); ignored when the endpoint is set.
//! - `AWS_EC2_METADATA_DISABLED`: `true` (any case) turns IMDS off.
//!
//! Profile settings (`ec2_metadata_service_endpoint` in `~/.aws/config`) are not read.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// Environment variable naming the IMDS endpoint URL.
pub(crate) const ENV_ENDPOINT: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// Environment variable choosing the IPv4 or IPv6 default endpoint.
pub(crate) const ENV_ENDPOINT_MODE: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE";
/// Environment variable that turns IMDS off when it is `true`.
pub(crate) const ENV_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";

/// The IPv4 IMDS endpoint, the default.
pub(crate) const DEFAULT_IPV4: &str = "http://169.254.169.254";
/// The IPv6 IMDS endpoint (Nitro instances, off unless enabled on the instance).
pub(crate) const DEFAULT_IPV6: &str = "http://[fd00:ec2::254]";

/// An endpoint value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    /// The value is not an absolute `http://` or `https://` URL with a host.
    #[error("{var}={value:?} is not a usable IMDS endpoint: {reason} (expected a URL such as {DEFAULT_IPV4} or http://127.0.0.1:8080)")]
    InvalidUrl {
        /// The variable the value came from.
        var: &'static str,
        /// The value as found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint mode is neither IPv4 nor IPv6.
    #[error("{ENV_ENDPOINT_MODE}={value:?} is not an endpoint mode: use IPv4 or IPv6")]
    InvalidMode {
        /// The value as found.
        value: String,
    },
}

/// An IMDS endpoint: the URL given to the SDK, and the host and port the TTL probe connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsEndpoint {
    url: String,
    host: String,
    port: u16,
}

impl ImdsEndpoint {
    /// Parses an endpoint URL; `var` names where it came from, for the error message.
    pub fn parse(var: &'static str, value: &str) -> Result<Self, EndpointError> {
        let invalid = |reason: &str| EndpointError::InvalidUrl {
            var,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri =
            value
                .parse()
                .map_err(|e: http::uri::InvalidUri| EndpointError::InvalidUrl {
                    var,
                    value: value.to_owned(),
                    reason: e.to_string(),
                })?;
        let default_port = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => 80,
            Some(s) if s.eq_ignore_ascii_case("https") => 443,
            Some(_) => return Err(invalid("the scheme must be http or https")),
            None => return Err(invalid("it has no scheme")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("it has no host"))?;
        // `http::Uri` keeps the brackets of an IPv6 literal.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Ok(Self {
            url: value.to_owned(),
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(default_port),
        })
    }

    /// The URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address, when the host is an IP literal (no name lookup needed).
    pub(crate) fn literal_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The socket address to connect to: the IP literal, or the first address the name resolves to.
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Some(addr) = self.literal_addr() {
            return Ok(addr);
        }
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address", self.host),
                )
            })
    }
}

/// IMDS as this place's environment configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsConfig {
    /// The endpoint the SDK would use.
    pub endpoint: ImdsEndpoint,
    /// `AWS_EC2_METADATA_DISABLED=true`: the SDK does not ask IMDS at all.
    pub disabled: bool,
}

impl ImdsConfig {
    /// Reads the configuration through `lookup` (the process environment, or a map in tests).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EndpointError> {
        let disabled = lookup(ENV_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint = if let Some(url) = lookup(ENV_ENDPOINT) {
            ImdsEndpoint::parse(ENV_ENDPOINT, &url)?
        } else {
            let default = match lookup(ENV_ENDPOINT_MODE) {
                None => DEFAULT_IPV4,
                Some(mode) if mode.eq_ignore_ascii_case("ipv4") => DEFAULT_IPV4,
                Some(mode) if mode.eq_ignore_ascii_case("ipv6") => DEFAULT_IPV6,
                Some(value) => return Err(EndpointError::InvalidMode { value }),
            };
            ImdsEndpoint::parse(ENV_ENDPOINT_MODE, default)?
        };
        Ok(Self { endpoint, disabled })
    }
}

/// The region the AWS SDKs take from the environment: `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub(crate) fn region_from_env(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .filter_map(lookup)
        .find(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn default_is_ipv4_link_local() {
        let c = ImdsConfig::from_env(env(&[])).unwrap();
        assert_eq!(c.endpoint.url(), "http://169.254.169.254");
        assert_eq!(c.endpoint.host(), "169.254.169.254");
        assert_eq!(c.endpoint.port(), 80);
        assert!(!c.disabled);
    }

    #[test]
    fn ipv6_mode_strips_brackets() {
        let c = ImdsConfig::from_env(env(&[(ENV_ENDPOINT_MODE, "IPv6")])).unwrap();
        assert_eq!(c.endpoint.url(), "http://[fd00:ec2::254]");
        assert_eq!(c.endpoint.host(), "fd00:ec2::254");
        assert_eq!(
            c.endpoint.literal_addr().unwrap(),
            "[fd00:ec2::254]:80".parse().unwrap()
        );
    }

    #[test]
    fn explicit_endpoint_wins_over_mode() {
        let c = ImdsConfig::from_env(env(&[
            (ENV_ENDPOINT, "http://127.0.0.1:18080"),
            (ENV_ENDPOINT_MODE, "IPv6"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint.host(), "127.0.0.1");
        assert_eq!(c.endpoint.port(), 18080);
        assert_eq!(
            c.endpoint.literal_addr().unwrap(),
            "127.0.0.1:18080".parse().unwrap()
        );
    }

    #[test]
    fn https_default_port_and_host_name() {
        let e = ImdsEndpoint::parse(ENV_ENDPOINT, "https://imds.test/").unwrap();
        assert_eq!(e.port(), 443);
        assert_eq!(e.host(), "imds.test");
        assert_eq!(e.literal_addr(), None);
    }

    #[test]
    fn bad_values_are_reported_with_the_variable() {
        for bad in [
            "",
            "127.0.0.1:80",
            "ftp://127.0.0.1",
            "http://",
            "not a url",
        ] {
            let err = ImdsConfig::from_env(env(&[(ENV_ENDPOINT, bad)])).unwrap_err();
            assert!(
                matches!(
                    err,
                    EndpointError::InvalidUrl {
                        var: ENV_ENDPOINT,
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains(ENV_ENDPOINT), "{err}");
        }
        let err = ImdsConfig::from_env(env(&[(ENV_ENDPOINT_MODE, "ipv5")])).unwrap_err();
        assert_eq!(
            err,
            EndpointError::InvalidMode {
                value: "ipv5".into()
            }
        );
    }

    #[test]
    fn disabled_is_case_insensitive_true_only() {
        assert!(
            ImdsConfig::from_env(env(&[(ENV_DISABLED, "TRUE")]))
                .unwrap()
                .disabled
        );
        assert!(
            !ImdsConfig::from_env(env(&[(ENV_DISABLED, "1")]))
                .unwrap()
                .disabled
        );
    }

    #[test]
    fn region_prefers_aws_region() {
        assert_eq!(
            region_from_env(env(&[
                ("AWS_REGION", "eu-west-1"),
                ("AWS_DEFAULT_REGION", "us-east-1")
            ])),
            Some("eu-west-1".into())
        );
        assert_eq!(
            region_from_env(env(&[("AWS_DEFAULT_REGION", "us-east-1")])),
            Some("us-east-1".into())
        );
        assert_eq!(region_from_env(env(&[("AWS_REGION", "")])), None);
    }
}

//! Why an IMDS request failed, in words a user can act on.
//!
//! The aws-config IMDS client and credentials provider wrap the cause in several layers; this
//! module walks the error chain and names the cause: a token response that never arrived (the
//! hop-limit signature), a refused connection, an HTTP status, a missing role.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use aws_config::imds::client::error::{ImdsError, TokenError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use thiserror::Error;

use crate::endpoint::ENV_DISABLED;

/// A duration printed in seconds, as in "1 s" or "0.25 s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0.as_secs_f64())
    }
}

/// Why IMDS did not give this place what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImdsFailure {
    /// `AWS_EC2_METADATA_DISABLED=true`: the SDK does not ask.
    #[error("IMDS is turned off in this place ({ENV_DISABLED}=true), so the SDK does not ask it")]
    Disabled,
    /// The token PUT was sent and no response came: the hop limit signature.
    #[error("no token response within {timeout}: the token response was most likely dropped by the instance's hop limit (HttpPutResponseHopLimit) before reaching this place")]
    TokenDropped {
        /// The read timeout.
        timeout: Secs,
    },
    /// No TCP connection to IMDS within the connect timeout.
    #[error("could not connect to IMDS within {timeout}: packets to it are dropped on the way, or nothing is there")]
    ConnectTimeout {
        /// The connect timeout.
        timeout: Secs,
    },
    /// The TCP connection failed at once.
    #[error("could not connect to IMDS: {reason}")]
    Connect {
        /// The socket error.
        reason: String,
    },
    /// 403 on the token PUT.
    #[error("IMDS refused the token request (HTTP 403): the metadata endpoint is disabled on the instance (HttpEndpoint=disabled), or the request went through a proxy (X-Forwarded-For)")]
    TokenForbidden,
    /// Another unusable answer to the token PUT.
    #[error("IMDS answered the token request with HTTP {status}: {reason}")]
    TokenRejected {
        /// The HTTP status.
        status: u16,
        /// What the SDK made of it.
        reason: String,
    },
    /// A GET after the token failed with 401.
    #[error("IMDS rejected the session token (HTTP 401): the token is invalid or expired")]
    Unauthorized,
    /// `iam/security-credentials/` is 404: no instance profile.
    #[error("the instance has no IAM role: IMDS answered 404 for iam/security-credentials/; attach an instance profile")]
    NoRole,
    /// A GET failed with another status.
    #[error("IMDS answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// A GET got no answer in time.
    #[error("IMDS did not answer within {timeout}")]
    ReadTimeout {
        /// The read timeout.
        timeout: Secs,
    },
    /// Anything else, with the full error chain.
    #[error("{0}")]
    Other(String),
}

impl ImdsFailure {
    /// Names the cause of an error from the aws-config IMDS client or credentials provider.
    pub(crate) fn diagnose(err: &(dyn StdError + 'static), timeout: Duration) -> Self {
        let timeout = Secs(timeout);
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(token) = e.downcast_ref::<SdkError<TokenError, HttpResponse>>() {
                return Self::from_token_error(token, timeout);
            }
            if let Some(ImdsError::ErrorResponse(resp)) = e.downcast_ref::<ImdsError>() {
                return match resp.response().status().as_u16() {
                    401 => Self::Unauthorized,
                    status => Self::Status { status },
                };
            }
            if let Some(conn) = e.downcast_ref::<ConnectorError>() {
                return Self::from_connector_error(conn, timeout, Self::ReadTimeout { timeout });
            }
            // The credentials provider turns a 404 on the role listing into this message.
            if e.source().is_none() && e.to_string() == "received 404 from IMDS" {
                return Self::NoRole;
            }
            cur = e.source();
        }
        Self::Other(chain(err))
    }

    fn from_token_error(err: &SdkError<TokenError, HttpResponse>, timeout: Secs) -> Self {
        match err {
            SdkError::ServiceError(ctx) => match ctx.raw().status().as_u16() {
                403 => Self::TokenForbidden,
                status => Self::TokenRejected {
                    status,
                    reason: ctx.err().to_string(),
                },
            },
            SdkError::DispatchFailure(d) => match d.as_connector_error() {
                Some(conn) => {
                    Self::from_connector_error(conn, timeout, Self::TokenDropped { timeout })
                }
                None => Self::Other(chain(err)),
            },
            SdkError::TimeoutError(_) => Self::TokenDropped { timeout },
            _ => Self::Other(chain(err)),
        }
    }

    /// `read_timeout` is what a timeout other than a connect timeout means at this point.
    fn from_connector_error(conn: &ConnectorError, timeout: Secs, read_timeout: Self) -> Self {
        let chain = chain(conn);
        if conn.is_timeout() {
            if chain.contains("HTTP connect timeout") {
                Self::ConnectTimeout { timeout }
            } else {
                read_timeout
            }
        } else if conn.is_io() {
            Self::Connect {
                reason: innermost_io_error(conn).unwrap_or(chain),
            }
        } else {
            Self::Other(chain)
        }
    }
}

/// The error and its sources, joined with ": " (messages repeated by a wrapper are left out).
pub fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let msg = e.to_string();
        if !msg.is_empty() && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn innermost_io_error(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut found = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            found = Some(io.to_string());
        }
        cur = e.source();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Msg(&'static str, Option<Box<dyn StdError + Send + Sync>>);
    impl fmt::Display for Msg {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Msg {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn StdError + 'static))
        }
    }

    #[test]
    fn no_role_message_is_recognised_deep_in_the_chain() {
        let err = Msg(
            "the credential provider was not enabled",
            Some(Box::new(Msg("received 404 from IMDS", None))),
        );
        assert_eq!(
            ImdsFailure::diagnose(&err, Duration::from_secs(1)),
            ImdsFailure::NoRole
        );
    }

    #[test]
    fn io_connector_error_names_the_socket_error() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let conn = ConnectorError::io(Box::new(io));
        let got = ImdsFailure::diagnose(&conn, Duration::from_secs(1));
        assert!(matches!(got, ImdsFailure::Connect { ref reason } if reason.contains("refused")));
    }

    #[test]
    fn unknown_errors_keep_their_chain() {
        let err = Msg("outer", Some(Box::new(Msg("inner cause", None))));
        let got = ImdsFailure::diagnose(&err, Duration::from_secs(1));
        assert_eq!(got, ImdsFailure::Other("outer: inner cause".into()));
    }

    #[test]
    fn token_dropped_message_names_the_hop_limit() {
        let msg = ImdsFailure::TokenDropped {
            timeout: Secs(Duration::from_secs(1)),
        }
        .to_string();
        assert_eq!(msg, "no token response within 1 s: the token response was most likely dropped by the instance's hop limit (HttpPutResponseHopLimit) before reaching this place");
    }
}

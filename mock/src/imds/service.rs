//! The instance metadata service.
//!
//! IMDSv2: a client first asks for a session token with
//! `PUT /latest/api/token` and `X-aws-ec2-metadata-token-ttl-seconds: 1..=21600`,
//! then sends it as `X-aws-ec2-metadata-token` on each GET. The token response, and
//! only it, leaves with IP TTL = the instance's hop limit: every router namespace on
//! the way back decrements it, and at 0 the response is dropped, so a client D routers
//! away needs hop limit >= D + 1. IMDSv1 is a GET without a token, served only with
//! `HttpTokens=optional`. Refusals: a token PUT carrying `X-Forwarded-For` (403), a token
//! PUT on a versioned path (403), other methods on the token path (405), a missing,
//! invalid or expired token when one is needed (401), anything while the endpoint is
//! disabled (403). Every response closes the connection and says `Server: EC2ws`.
//! Bound to an IPv6 address, the IMDS is EC2's IPv6 endpoint (`[fd00:ec2::254]`),
//! served only with `HttpProtocolIpv6=enabled`; the token response then leaves with the
//! hop limit as its IPv6 hop limit.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use imds_vocab::{HttpEndpoint, HttpTokens, Toggle};

use crate::imds::network::NetworkInterface;
use crate::imds::notices::Notices;
use crate::imds::tokens::{TokenRejection, TTL_RANGE};
use crate::imds_version::ImdsVersion;
use crate::server::{Connection, Handler};
use crate::state::MockState;
use crate::timestamp::iso8601;

pub(crate) const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub(crate) const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";
pub(crate) const SERVER_NAME: &str = "EC2ws";

/// What the IMDS decided about one request, before it becomes a response.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Token {
        token: String,
        ttl_seconds: u64,
    },
    Text(String),
    Json(Bytes),
    /// User data: the bytes as given.
    Raw(Bytes),
    Refused(StatusCode),
}

pub(crate) struct Imds {
    state: Arc<MockState>,
}

impl Imds {
    pub(crate) fn new(state: Arc<MockState>) -> Self {
        Imds { state }
    }

    fn answer(&self, request: &Request<Bytes>) -> Answer {
        let options = self.state.options();
        if options.http_endpoint == HttpEndpoint::Disabled {
            return Answer::Refused(StatusCode::FORBIDDEN);
        }
        let path = request.uri().path();
        let Some((version, rest)) = split_version(path) else {
            return match *request.method() {
                Method::GET | Method::HEAD if path == "/" => Answer::Text("latest".into()),
                _ => Answer::Refused(StatusCode::NOT_FOUND),
            };
        };
        if rest == "api/token" {
            return self.token(request, version == "latest");
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Answer::Refused(StatusCode::METHOD_NOT_ALLOWED);
        }
        let caller = match request.headers().get(TOKEN_HEADER) {
            Some(token) => match token
                .to_str()
                .map_err(|_| TokenRejection::Invalid)
                .and_then(|t| self.state.mint.verify(t, SystemTime::now()))
            {
                Ok(()) => ImdsVersion::V2,
                Err(_) => return Answer::Refused(StatusCode::UNAUTHORIZED),
            },
            None if options.http_tokens == HttpTokens::Optional => ImdsVersion::V1,
            None => return Answer::Refused(StatusCode::UNAUTHORIZED),
        };
        self.metadata(rest, caller)
    }

    fn token(&self, request: &Request<Bytes>, latest: bool) -> Answer {
        if request.method() != Method::PUT {
            return Answer::Refused(StatusCode::METHOD_NOT_ALLOWED);
        }
        if !latest || request.headers().contains_key(FORWARDED_FOR_HEADER) {
            return Answer::Refused(StatusCode::FORBIDDEN);
        }
        match token_ttl(request.headers()) {
            Some(ttl_seconds) => {
                let token = self
                    .state
                    .mint
                    .issue(Duration::from_secs(ttl_seconds), SystemTime::now());
                self.state.events.token_issued();
                Answer::Token {
                    token: token.as_str().to_string(),
                    ttl_seconds,
                }
            }
            None => Answer::Refused(StatusCode::BAD_REQUEST),
        }
    }

    fn metadata(&self, rest: &str, caller: ImdsVersion) -> Answer {
        let id = &self.state.identity;
        let text = |s: &str| Answer::Text(s.to_string());
        match rest.trim_end_matches('/') {
            "" => {
                let user_data = self.state.user_data.is_some();
                Answer::Text(
                    ["dynamic", "meta-data", "user-data"][..2 + usize::from(user_data)].join("\n"),
                )
            }
            "user-data" => match &self.state.user_data {
                Some(data) => Answer::Raw(data.clone()),
                None => Answer::Refused(StatusCode::NOT_FOUND),
            },
            "meta-data" => Answer::Text(self.meta_data_listing()),
            "meta-data/ami-id" => text(&id.image_id),
            "meta-data/hostname" | "meta-data/local-hostname" => Answer::Text(id.hostname()),
            "meta-data/instance-id" => text(&id.instance_id),
            "meta-data/instance-type" => text(&id.instance_type),
            "meta-data/local-ipv4" => text(&id.private_ip),
            "meta-data/placement" => text("availability-zone\nregion"),
            "meta-data/placement/availability-zone" => text(&id.availability_zone),
            "meta-data/placement/region" => text(&id.region),
            "meta-data/iam" => text("info\nsecurity-credentials/"),
            "meta-data/iam/info" => {
                let creds = self.state.credentials.current(caller, SystemTime::now());
                Answer::Json(
                    serde_json::to_string_pretty(&serde_json::json!({
                        "Code": "Success",
                        "LastUpdated": iso8601(creds.last_updated),
                        "InstanceProfileArn": id.instance_profile_arn(),
                        "InstanceProfileId": id.instance_profile_id,
                    }))
                    .expect("JSON serialises")
                    .into(),
                )
            }
            "meta-data/iam/security-credentials" => text(&id.role),
            "meta-data/mac" => Answer::Text(NetworkInterface::of(id).mac),
            "meta-data/network" => text("interfaces/"),
            "meta-data/network/interfaces" => text("macs/"),
            "meta-data/tags"
            | "meta-data/tags/instance"
            | "meta-data/spot"
            | "meta-data/events"
            | "meta-data/events/recommendations"
            | "meta-data/autoscaling" => self.notice_listing(rest.trim_end_matches('/')),
            "meta-data/events/maintenance" => text("history\nscheduled"),
            "meta-data/events/maintenance/scheduled" => {
                Answer::Json(self.state.notices().maintenance_json().into())
            }
            "meta-data/events/maintenance/history" => Answer::Json("[]".into()),
            "meta-data/autoscaling/target-lifecycle-state" => {
                match self.state.notices().lifecycle {
                    Some(state) => text(state.into()),
                    None => Answer::Refused(StatusCode::NOT_FOUND),
                }
            }
            "meta-data/spot/instance-action" => {
                self.notice_json(super::notices::Notices::spot_json)
            }
            "meta-data/events/recommendations/rebalance" => {
                self.notice_json(super::notices::Notices::rebalance_json)
            }
            "dynamic" => text("instance-identity/"),
            "dynamic/instance-identity" => text("document"),
            "dynamic/instance-identity/document" => Answer::Json(
                serde_json::to_string_pretty(&id.identity_document())
                    .expect("JSON serialises")
                    .into(),
            ),
            other => {
                if let Some(macs) = other.strip_prefix("meta-data/network/interfaces/macs") {
                    let below = macs.strip_prefix('/').unwrap_or(macs);
                    return match NetworkInterface::of(id).answer(below) {
                        Some(value) => Answer::Text(value),
                        None => Answer::Refused(StatusCode::NOT_FOUND),
                    };
                }
                if let Some(key) = other.strip_prefix("meta-data/tags/instance/") {
                    return match self.tags().and_then(|tags| tags.get(key).cloned()) {
                        Some(value) => Answer::Text(value),
                        None => Answer::Refused(StatusCode::NOT_FOUND),
                    };
                }
                match other.strip_prefix("meta-data/iam/security-credentials/") {
                    Some(role) if role == id.role => {
                        let creds = self.state.credentials.current(caller, SystemTime::now());
                        self.state.events.credentials_served(caller);
                        Answer::Json(creds.imds_json())
                    }
                    _ => Answer::Refused(StatusCode::NOT_FOUND),
                }
            }
        }
    }
}

impl Imds {
    /// The instance's tags, when `InstanceMetadataTags` lets IMDS serve them.
    fn tags(&self) -> Option<std::collections::BTreeMap<String, String>> {
        (self.state.options().instance_metadata_tags == Toggle::Enabled)
            .then(|| self.state.notices().tags)
    }

    /// `meta-data/`: what there is now, in EC2's (alphabetical) order; `autoscaling/`,
    /// `spot/` and `tags/` only while they have something in them.
    fn meta_data_listing(&self) -> String {
        let notices = self.state.notices();
        let mut entries = vec![
            "ami-id",
            "events/",
            "hostname",
            "iam/",
            "instance-id",
            "instance-type",
            "local-hostname",
            "local-ipv4",
            "mac",
            "network/",
            "placement/",
        ];
        if notices.lifecycle.is_some() {
            entries.push("autoscaling/");
        }
        if notices.spot_action.is_some() {
            entries.push("spot/");
        }
        if self.tags().is_some() {
            entries.push("tags/");
        }
        entries.sort_unstable();
        entries.join("\n")
    }

    /// The directory listings under `tags/`, `spot/`, `events/` and `autoscaling/`: 404
    /// while there is nothing in them.
    fn notice_listing(&self, path: &str) -> Answer {
        let notices = self.state.notices();
        let entries: &[&str] = match path {
            "meta-data/tags" if self.tags().is_some() => &["instance"],
            "meta-data/tags/instance" => {
                return match self.tags() {
                    Some(tags) => Answer::Text(tags.keys().cloned().collect::<Vec<_>>().join("\n")),
                    None => Answer::Refused(StatusCode::NOT_FOUND),
                }
            }
            "meta-data/spot" if notices.spot_action.is_some() => &["instance-action"],
            "meta-data/events" if notices.rebalance.is_some() => {
                &["maintenance/", "recommendations/"]
            }
            "meta-data/events" => &["maintenance/"],
            "meta-data/autoscaling" if notices.lifecycle.is_some() => &["target-lifecycle-state"],
            "meta-data/events/recommendations" if notices.rebalance.is_some() => &["rebalance"],
            _ => return Answer::Refused(StatusCode::NOT_FOUND),
        };
        Answer::Text(entries.join("\n"))
    }

    fn notice_json(&self, render: impl FnOnce(&Notices) -> Option<String>) -> Answer {
        match render(&self.state.notices()) {
            Some(json) => Answer::Json(json.into()),
            None => Answer::Refused(StatusCode::NOT_FOUND),
        }
    }
}

impl Handler for Imds {
    /// The IPv6 endpoint (`[fd00:ec2::254]` on EC2) is there only with
    /// `HttpProtocolIpv6=enabled`; while it is disabled a connection to it is closed
    /// unanswered (on EC2 nothing answers at all).
    fn admits(&self, local: std::net::SocketAddr) -> bool {
        let ipv6 =
            matches!(local, std::net::SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_none());
        !ipv6 || self.state.options().http_protocol_ipv6 == Toggle::Enabled
    }

    fn handle(&self, request: Request<Bytes>, connection: &Connection) -> Response<Bytes> {
        let answer = self.answer(&request);
        if let Answer::Token { .. } = answer {
            let hops = self.state.options().hop_limit.get();
            if let Err(err) = connection.set_response_hop_limit(hops) {
                tracing::error!(%err, "could not set the token response's hop limit");
                return respond(Answer::Refused(StatusCode::INTERNAL_SERVER_ERROR), false);
            }
        }
        let response = respond(answer, request.method() == Method::HEAD);
        tracing::debug!(
            target: "imds",
            peer = %connection.peer,
            method = %request.method(),
            path = request.uri().path(),
            status = response.status().as_u16(),
        );
        response
    }
}

/// `/latest/meta-data/x` -> `("latest", "meta-data/x")`; versions are `latest` or a date.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    let (version, rest) = path.split_once('/').unwrap_or((path, ""));
    let is_date = version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    (version == "latest" || is_date || version == "1.0").then_some((version, rest))
}

fn token_ttl(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(TOKEN_TTL_HEADER)?.to_str().ok()?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|ttl| TTL_RANGE.contains(ttl))
}

fn respond(answer: Answer, head: bool) -> Response<Bytes> {
    let (status, content_type, body, ttl) = match answer {
        Answer::Token { token, ttl_seconds } => (
            StatusCode::OK,
            "text/plain",
            token.into(),
            Some(ttl_seconds),
        ),
        Answer::Text(body) => (StatusCode::OK, "text/plain", body.into(), None),
        Answer::Json(body) => (StatusCode::OK, "text/plain", body, None),
        Answer::Raw(body) => (StatusCode::OK, "application/octet-stream", body, None),
        Answer::Refused(status) => (status, "text/html", error_page(status).into(), None),
    };
    let length = body.len();
    let mut response = Response::new(if head { Bytes::new() } else { body });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER_NAME));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    if let Some(ttl) = ttl {
        headers.insert(TOKEN_TTL_HEADER, HeaderValue::from(ttl));
    }
    response
}

/// The XHTML page real IMDS answers its refusals with.
pub(crate) fn error_page(status: StatusCode) -> String {
    let title = format!(
        "{} - {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    format!(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n\
         <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
         \t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n \
         <head>\n  <title>{title}</title>\n </head>\n \
         <body>\n  <h1>{title}</h1>\n </body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_latest_or_dates() {
        assert_eq!(
            split_version("/latest/meta-data/"),
            Some(("latest", "meta-data/"))
        );
        assert_eq!(
            split_version("/2021-03-23/api/token"),
            Some(("2021-03-23", "api/token"))
        );
        assert_eq!(split_version("/latest"), Some(("latest", "")));
        assert_eq!(split_version("/nope/meta-data"), None);
    }

    #[test]
    fn token_ttl_must_be_an_integer_in_range() {
        let ttl = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(TOKEN_TTL_HEADER, HeaderValue::from_str(v).unwrap());
            token_ttl(&h)
        };
        assert_eq!(ttl("1"), Some(1));
        assert_eq!(ttl("21600"), Some(21600));
        assert_eq!(ttl("0"), None);
        assert_eq!(ttl("21601"), None);
        assert_eq!(ttl("-5"), None);
        assert_eq!(ttl("1.5"), None);
        assert_eq!(ttl(""), None);
        assert_eq!(token_ttl(&HeaderMap::new()), None);
    }

    #[test]
    fn error_pages_are_xhtml_with_the_status() {
        let page = error_page(StatusCode::UNAUTHORIZED);
        assert!(page.starts_with("<?xml"));
        assert!(page.contains("<title>401 - Unauthorized</title>"));
    }
}

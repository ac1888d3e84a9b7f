//! Verifies SigV4-signed requests against the credentials the mock IMDS issued.
//!
//! The signature is recomputed with `aws-sigv4` from the request as received: the
//! headers the client listed in `SignedHeaders`, the body, and the client's
//! `X-Amz-Date`, with the secret of the access key named in the credential scope.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use time::macros::format_description;
use time::PrimitiveDateTime;

use crate::credentials::{CredentialStore, SessionCredentials};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const DATE_HEADER: &str = "x-amz-date";
const SECURITY_TOKEN_HEADER: &str = "x-amz-security-token";
/// How far a request's `X-Amz-Date` may be from the server's clock.
const MAX_SKEW: Duration = Duration::from_mins(15);

/// Why a request's authentication is refused. Each service maps these to its own codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthFailure {
    #[error("no Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("the credential scope names service {found:?}, not {expected:?}")]
    WrongService { expected: String, found: String },
    #[error("unknown access key {0}")]
    UnknownAccessKey(String),
    #[error("session credentials sent without their session token")]
    MissingSessionToken,
    #[error("the session token does not belong to the access key")]
    WrongSessionToken,
    #[error("the request's signature does not match")]
    SignatureMismatch,
    #[error("the request time {0} is too far from the server's clock")]
    RequestTimeSkewed(String),
    #[error("the credentials expired")]
    Expired,
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub(crate) access_key_id: String,
    pub(crate) date: String,
    pub(crate) region: String,
    pub(crate) service: String,
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: String,
}

impl Authorization {
    pub(crate) fn parse(value: &str) -> Result<Self, AuthFailure> {
        let malformed = |why: &str| AuthFailure::Malformed(why.to_string());
        let rest = value
            .strip_prefix(ALGORITHM)
            .ok_or_else(|| malformed("the algorithm must be AWS4-HMAC-SHA256"))?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, val) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| malformed("expected key=value pairs"))?;
            match key {
                "Credential" => credential = Some(val),
                "SignedHeaders" => signed_headers = Some(val),
                "Signature" => signature = Some(val),
                _ => {}
            }
        }
        let credential = credential.ok_or_else(|| malformed("Credential is missing"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
            return Err(malformed(
                "Credential must be <key>/<date>/<region>/<service>/aws4_request",
            ));
        };
        Ok(Authorization {
            access_key_id: access_key_id.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            signed_headers: signed_headers
                .ok_or_else(|| malformed("SignedHeaders is missing"))?
                .split(';')
                .map(str::to_string)
                .collect(),
            signature: signature
                .ok_or_else(|| malformed("Signature is missing"))?
                .to_string(),
        })
    }
}

/// The credential scope `request` claims (its access key, date, region and service),
/// unverified: which service and region a request on the one endpoint is for.
pub(crate) fn credential_scope(request: &Request<Bytes>) -> Option<Authorization> {
    credential_scope_in(request.headers())
}

/// [`credential_scope`] from a request's head alone (before its body is read).
pub(crate) fn credential_scope_in(headers: &http::HeaderMap) -> Option<Authorization> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    Authorization::parse(value.to_str().ok()?).ok()
}

/// The credential set that signed `request` for `service`, if the signature holds.
pub(crate) fn verify(
    request: &Request<Bytes>,
    service: &str,
    store: &CredentialStore,
    now: SystemTime,
) -> Result<Arc<SessionCredentials>, AuthFailure> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let authorization = Authorization::parse(
        header(http::header::AUTHORIZATION.as_str()).ok_or(AuthFailure::Missing)?,
    )?;
    if authorization.service != service {
        return Err(AuthFailure::WrongService {
            expected: service.to_string(),
            found: authorization.service,
        });
    }
    let creds = store
        .lookup(&authorization.access_key_id)
        .ok_or_else(|| AuthFailure::UnknownAccessKey(authorization.access_key_id.clone()))?;
    match header(SECURITY_TOKEN_HEADER) {
        None => return Err(AuthFailure::MissingSessionToken),
        Some(token) if token != creds.session_token => return Err(AuthFailure::WrongSessionToken),
        Some(_) => {}
    }
    let date = header(DATE_HEADER)
        .ok_or_else(|| AuthFailure::Malformed("X-Amz-Date is missing".into()))?;
    let signed_at = parse_amz_date(date)?;
    let skew = now
        .duration_since(signed_at)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(AuthFailure::RequestTimeSkewed(date.to_string()));
    }

    let expected = expected_signature(request, &authorization, &creds, signed_at)?;
    if expected != authorization.signature {
        return Err(AuthFailure::SignatureMismatch);
    }
    if creds.is_expired(now) {
        return Err(AuthFailure::Expired);
    }
    Ok(creds)
}

fn expected_signature(
    request: &Request<Bytes>,
    authorization: &Authorization,
    creds: &SessionCredentials,
    signed_at: SystemTime,
) -> Result<String, AuthFailure> {
    let mut headers = Vec::new();
    for name in &authorization.signed_headers {
        for value in request.headers().get_all(name.as_str()) {
            let value = value.to_str().map_err(|_| AuthFailure::SignatureMismatch)?;
            headers.push((name.as_str(), value));
        }
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let signable = SignableRequest::new(
        request.method().as_str(),
        format!("http://{host}{path_and_query}"),
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| AuthFailure::Malformed(e.to_string()))?;

    let identity = Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        Some(creds.session_token.clone()),
        Some(creds.expiration),
        "imds-harness-mock",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Only the client's signed headers are passed in, so none is to be left out.
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&authorization.region)
        .name(&authorization.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|e| AuthFailure::Malformed(e.to_string()))?
        .into();
    let (_, signature) = sign(signable, &params)
        .map_err(|e| AuthFailure::Malformed(e.to_string()))?
        .into_parts();
    Ok(signature)
}

fn parse_amz_date(value: &str) -> Result<SystemTime, AuthFailure> {
    PrimitiveDateTime::parse(
        value,
        format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map(|t| t.assume_utc().into())
    .map_err(|_| AuthFailure::Malformed(format!("X-Amz-Date {value:?} is not YYYYMMDDTHHMMSSZ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imds_version::ImdsVersion;

    fn signed_request(creds: &SessionCredentials, body: &str, at: SystemTime) -> Request<Bytes> {
        let mut request = Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:4566/")
            .header("host", "127.0.0.1:4566")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body.to_string()))
            .unwrap();
        let identity = Credentials::new(
            &creds.access_key_id,
            &creds.secret_access_key,
            Some(creds.session_token.clone()),
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sts")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:4566/",
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut request);
        request
    }

    #[test]
    fn a_request_signed_with_issued_credentials_verifies() {
        let store = CredentialStore::new(Duration::from_hours(1));
        let now = SystemTime::now();
        let creds = store.current(ImdsVersion::V2, now);
        let request = signed_request(&creds, "Action=GetCallerIdentity", now);
        let verified = verify(&request, "sts", &store, now).unwrap();
        assert_eq!(verified.access_key_id, creds.access_key_id);
        assert_eq!(
            verify(&request, "ec2", &store, now).unwrap_err(),
            AuthFailure::WrongService {
                expected: "ec2".into(),
                found: "sts".into()
            }
        );
    }

    #[test]
    fn tampering_and_unknown_keys_are_refused() {
        let store = CredentialStore::new(Duration::from_hours(1));
        let now = SystemTime::now();
        let creds = store.current(ImdsVersion::V2, now);

        let mut tampered = signed_request(&creds, "Action=GetCallerIdentity", now);
        *tampered.body_mut() = Bytes::from_static(b"Action=GetCallerIdentity&x=1");
        assert_eq!(
            verify(&tampered, "sts", &store, now).unwrap_err(),
            AuthFailure::SignatureMismatch
        );

        let mut wrong_secret = (*creds).clone();
        wrong_secret.secret_access_key = "x".repeat(40);
        let request = signed_request(&wrong_secret, "Action=GetCallerIdentity", now);
        assert_eq!(
            verify(&request, "sts", &store, now).unwrap_err(),
            AuthFailure::SignatureMismatch
        );

        let mut without_token = signed_request(&creds, "Action=GetCallerIdentity", now);
        without_token.headers_mut().remove(SECURITY_TOKEN_HEADER);
        assert_eq!(
            verify(&without_token, "sts", &store, now).unwrap_err(),
            AuthFailure::MissingSessionToken
        );

        let other_store = CredentialStore::new(Duration::from_hours(1));
        let stranger = other_store.current(ImdsVersion::V2, now);
        let request = signed_request(&stranger, "Action=GetCallerIdentity", now);
        assert!(matches!(
            verify(&request, "sts", &store, now).unwrap_err(),
            AuthFailure::UnknownAccessKey(_)
        ));

        let mut unsigned = signed_request(&creds, "Action=GetCallerIdentity", now);
        unsigned.headers_mut().remove(http::header::AUTHORIZATION);
        assert_eq!(
            verify(&unsigned, "sts", &store, now).unwrap_err(),
            AuthFailure::Missing
        );
    }

    #[test]
    fn expired_credentials_and_stale_dates_are_refused() {
        let store = CredentialStore::new(Duration::from_mins(1));
        let t0 = SystemTime::now();
        let creds = store.current(ImdsVersion::V2, t0);
        let later = t0 + Duration::from_secs(61);
        let request = signed_request(&creds, "Action=GetCallerIdentity", later);
        assert_eq!(
            verify(&request, "sts", &store, later).unwrap_err(),
            AuthFailure::Expired
        );
        let old = signed_request(&creds, "Action=GetCallerIdentity", t0);
        assert!(matches!(
            verify(&old, "sts", &store, t0 + Duration::from_hours(1)).unwrap_err(),
            AuthFailure::RequestTimeSkewed(_)
        ));
    }

    #[test]
    fn authorization_header_parses() {
        let parsed = Authorization::parse(
            "AWS4-HMAC-SHA256 Credential=ASIAX/20261129/us-east-1/sts/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(parsed.access_key_id, "ASIAX");
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        assert!(Authorization::parse("Basic abc").is_err());
        assert!(Authorization::parse("AWS4-HMAC-SHA256 Credential=a/b, Signature=x").is_err());
    }
}

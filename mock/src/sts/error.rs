//! How STS reports an error: the Query protocol's `ErrorResponse`, and the codes of its
//! authentication failures.

use http::StatusCode;

use crate::query::escape;
use crate::sigv4::AuthFailure;

pub(crate) const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
pub(crate) const API_VERSION: &str = "2011-06-15";

/// An STS error as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StsError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// How STS reports each authentication failure.
pub(crate) fn auth_error(failure: &AuthFailure) -> StsError {
    let (status, code, message) = match failure {
        AuthFailure::Missing => (
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token".to_string(),
        ),
        AuthFailure::Malformed(why) => (
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            format!("Authorization header is malformed: {why}"),
        ),
        AuthFailure::WrongService { expected, .. } => (
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            format!("Credential should be scoped to correct service: '{expected}'. "),
        ),
        AuthFailure::UnknownAccessKey(_)
        | AuthFailure::MissingSessionToken
        | AuthFailure::WrongSessionToken => (
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.".to_string(),
        ),
        AuthFailure::SignatureMismatch => (
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details."
                .to_string(),
        ),
        AuthFailure::RequestTimeSkewed(date) => (
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            format!(
                "Signature expired: {date} is now earlier or later than the server's time window."
            ),
        ),
        AuthFailure::Expired => (
            StatusCode::FORBIDDEN,
            "ExpiredToken",
            "The security token included in the request is expired".to_string(),
        ),
    };
    StsError {
        status,
        code,
        message,
    }
}

/// The `ErrorResponse` document of `error`.
pub(crate) fn error_body(error: &StsError, request_id: &str) -> String {
    let kind = if error.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
         <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        error.code,
        escape(&error.message),
    )
}

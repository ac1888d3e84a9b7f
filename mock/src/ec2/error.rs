//! The error every EC2 action answers with, and how EC2 reports a refused signature.

use http::StatusCode;

use crate::query::escape;
use crate::sigv4::AuthFailure;

/// An EC2 error as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ec2Error {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Ec2Error {
    pub(crate) fn bad_request(code: &'static str, message: String) -> Self {
        Ec2Error {
            status: StatusCode::BAD_REQUEST,
            code,
            message,
        }
    }
}

/// How EC2 reports each authentication failure.
pub(crate) fn auth_error(failure: &AuthFailure) -> Ec2Error {
    let (status, code, message) = match failure {
        AuthFailure::Missing => (
            StatusCode::UNAUTHORIZED,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token".to_string(),
        ),
        AuthFailure::Malformed(why) => (
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            format!("Authorization header is malformed: {why}"),
        ),
        AuthFailure::UnknownAccessKey(_)
        | AuthFailure::MissingSessionToken
        | AuthFailure::WrongSessionToken => (
            StatusCode::UNAUTHORIZED,
            "AuthFailure",
            "AWS was not able to validate the provided access credentials".to_string(),
        ),
        AuthFailure::WrongService { .. } | AuthFailure::SignatureMismatch => (
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details."
                .to_string(),
        ),
        AuthFailure::Expired | AuthFailure::RequestTimeSkewed(_) => (
            StatusCode::BAD_REQUEST,
            "RequestExpired",
            "Request has expired.".to_string(),
        ),
    };
    Ec2Error {
        status,
        code,
        message,
    }
}

pub(crate) fn error_body(error: &Ec2Error, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>\n",
        error.code,
        escape(&error.message),
    )
}

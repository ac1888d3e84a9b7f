//! Errors as AWS Organizations says them over its JSON protocol:
//! `{"__type": CODE, "Message": ..., "Reason": ...}`, `application/x-amz-json-1.1`.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::query::aws_response;
use crate::sigv4::AuthFailure;

/// The most characters of a message an answer carries.
const MAX_MESSAGE: usize = 256;

/// An error as Organizations reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrgError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) reason: Option<&'static str>,
}

impl OrgError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        OrgError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            reason: None,
        }
    }

    pub(crate) fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        OrgError {
            reason: Some(reason),
            ..Self::new("InvalidInputException", message)
        }
    }

    /// The error's answer; a message that quotes the request is cut to
    /// [`MAX_MESSAGE`] characters.
    pub(crate) fn response(&self, request_id: &str) -> Response<Bytes> {
        let message: String = match self.message.char_indices().nth(MAX_MESSAGE) {
            Some((cut, _)) => format!("{}...", &self.message[..cut]),
            None => self.message.clone(),
        };
        let mut body = json!({ "__type": self.code, "Message": message });
        if let Some(reason) = self.reason {
            body["Reason"] = json!(reason);
        }
        json_response(self.status, &body, request_id)
    }
}

pub(crate) fn auth_error(failure: &AuthFailure) -> OrgError {
    match failure {
        AuthFailure::Missing => OrgError {
            status: StatusCode::FORBIDDEN,
            ..OrgError::new(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        },
        AuthFailure::UnknownAccessKey(_)
        | AuthFailure::MissingSessionToken
        | AuthFailure::WrongSessionToken => OrgError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        AuthFailure::Expired => OrgError::new(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
        AuthFailure::Malformed(_)
        | AuthFailure::WrongService { .. }
        | AuthFailure::SignatureMismatch
        | AuthFailure::RequestTimeSkewed(_) => OrgError::new(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ),
    }
}

/// `body` as the service's JSON answer.
pub(crate) fn json_response(status: StatusCode, body: &Value, request_id: &str) -> Response<Bytes> {
    aws_response(
        status,
        "application/x-amz-json-1.1",
        body.to_string(),
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut() {
        let long = OrgError::new("UnknownOperationException", "\u{e9}".repeat(10_000));
        let body: Value = serde_json::from_slice(long.response("id").body()).unwrap();
        let message = body["Message"].as_str().unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE + 3);
        let short = OrgError::invalid("INVALID_INPUT", "short");
        let body: Value = serde_json::from_slice(short.response("id").body()).unwrap();
        assert_eq!(body["Message"], "short");
        assert_eq!(body["Reason"], "INVALID_INPUT");
    }
}

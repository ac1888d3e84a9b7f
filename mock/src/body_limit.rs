//! How large a request body each service takes, and how it refuses a larger one: in its
//! own error shape, before the body is read whole.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::ec2::error::{self as ec2_error, Ec2Error};
use crate::imds::service::{error_page, SERVER_NAME};
use crate::organizations::error::OrgError;
use crate::query::{request_id, xml_response};
use crate::request_log::Service;
use crate::router::{routed_api, RoutedApi};
use crate::sts::error::{self as sts, StsError};

/// The API whose error shape an oversized body is refused in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Imds,
    Sts,
    Ec2,
    Organizations,
}

/// The code both APIs answer an oversized body with (the mock's wording: AWS documents
/// no code for it).
const TOO_LARGE_CODE: &str = "RequestEntityTooLarge";

impl Service {
    /// The largest request body this service reads; a larger one gets
    /// [`Self::body_too_large`].
    pub(crate) const fn max_body(self) -> usize {
        match self {
            // The only IMDS request with a method that carries a body is the token PUT,
            // whose body is empty.
            Service::Imds => 1 << 10,
            // GetCallerIdentity takes no parameter; STS's largest (AssumeRole's session
            // policy) packs to ~2 KiB.
            Service::Sts => 64 << 10,
            // User data is up to 16 KB (22 KB as base64), a DescribeInstances up to
            // 1,000 instance ids: a launch template version with every field stays far
            // below this.
            Service::Ec2 => 256 << 10,
        }
    }

    /// The answer to a body over [`Self::max_body`]: 413 in the service's error shape,
    /// and the connection closed (the rest of the body is never read).
    pub(crate) fn body_too_large(self) -> Response<Bytes> {
        self.refuse_body(match self {
            Service::Imds => Shape::Imds,
            Service::Sts => Shape::Sts,
            Service::Ec2 => Shape::Ec2,
        })
    }

    /// [`Self::body_too_large`] for a request with these `headers`: on the EC2 listener,
    /// which also answers the APIs its SigV4 credential scope names, in that API's shape
    /// (Organizations' JSON, STS's XML).
    pub(crate) fn body_too_large_for(self, headers: &HeaderMap) -> Response<Bytes> {
        match (self, routed_api(headers)) {
            (Service::Ec2, RoutedApi::Organizations) => self.refuse_body(Shape::Organizations),
            (Service::Ec2, RoutedApi::Sts) => self.refuse_body(Shape::Sts),
            _ => self.body_too_large(),
        }
    }

    fn refuse_body(self, shape: Shape) -> Response<Bytes> {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        let message = format!(
            "The request body is larger than {} bytes, the most this service accepts.",
            self.max_body()
        );
        let mut response = match shape {
            Shape::Organizations => OrgError {
                status,
                code: TOO_LARGE_CODE,
                message,
                reason: None,
            }
            .response(&request_id()),
            Shape::Imds => {
                let mut response = Response::new(Bytes::from(error_page(status)));
                *response.status_mut() = status;
                let headers = response.headers_mut();
                headers.insert(header::SERVER, HeaderValue::from_static(SERVER_NAME));
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                response
            }
            Shape::Sts => {
                let id = request_id();
                let error = StsError {
                    status,
                    code: TOO_LARGE_CODE,
                    message,
                };
                xml_response(status, sts::error_body(&error, &id), &id)
            }
            Shape::Ec2 => {
                let id = request_id();
                let error = Ec2Error {
                    status,
                    code: TOO_LARGE_CODE,
                    message,
                };
                xml_response(status, ec2_error::error_body(&error, &id), &id)
            }
        };
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: Response<Bytes>) -> String {
        String::from_utf8(response.into_body().to_vec()).unwrap()
    }

    #[test]
    fn each_service_refuses_in_its_own_shape() {
        for service in [Service::Imds, Service::Sts, Service::Ec2] {
            let response = service.body_too_large();
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(response.headers()[header::CONNECTION], "close");
            let text = body(response);
            match service {
                Service::Imds => assert!(text.contains("<title>413 - Payload Too Large</title>")),
                Service::Sts => {
                    assert!(text.contains("<ErrorResponse"), "{text}");
                    assert!(text.contains("<Code>RequestEntityTooLarge</Code>"));
                    assert!(text.contains("65536 bytes"));
                }
                Service::Ec2 => {
                    assert!(text.contains("<Response><Errors><Error>"), "{text}");
                    assert!(text.contains("<Code>RequestEntityTooLarge</Code>"));
                    assert!(text.contains("262144 bytes"));
                }
            }
        }
    }

    #[test]
    fn the_ec2_listener_refuses_in_the_shape_of_the_signed_api() {
        let signed = |service: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!(
                    "AWS4-HMAC-SHA256 Credential=ASIAX/20260101/us-east-1/{service}/aws4_request, \
                     SignedHeaders=host, Signature=00"
                ))
                .unwrap(),
            );
            headers
        };
        let org = Service::Ec2.body_too_large_for(&signed("organizations"));
        assert_eq!(org.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(org.headers()[header::CONNECTION], "close");
        let json: serde_json::Value = serde_json::from_slice(org.body()).unwrap();
        assert_eq!(json["__type"], "RequestEntityTooLarge");
        assert!(body(Service::Ec2.body_too_large_for(&signed("sts"))).contains("<ErrorResponse"));
        assert!(
            body(Service::Ec2.body_too_large_for(&signed("ec2"))).contains("<Response><Errors>")
        );
        assert!(
            body(Service::Ec2.body_too_large_for(&HeaderMap::new())).contains("<Response><Errors>")
        );
        // Only the EC2 listener answers other APIs.
        assert!(
            body(Service::Sts.body_too_large_for(&signed("organizations")))
                .contains("<ErrorResponse")
        );
    }
}

//! The AWS Query protocol as STS and EC2 speak it: form-encoded parameters in, XML out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

/// A Query-protocol request's parameters (`Action`, `Version`, ...), from a POST form
/// body or a GET query string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct QueryParams(BTreeMap<String, String>);

impl QueryParams {
    pub(crate) fn from_request(request: &Request<Bytes>) -> Self {
        let encoded: &[u8] = if request.method() == Method::POST {
            request.body()
        } else {
            request.uri().query().unwrap_or("").as_bytes()
        };
        QueryParams(form_urlencoded::parse(encoded).into_owned().collect())
    }

    /// The parameters of a POST with this form body.
    #[cfg(test)]
    pub(crate) fn from_body(body: &str) -> Self {
        Self::from_request(
            &Request::builder()
                .method(Method::POST)
                .body(Bytes::from(body.to_owned()))
                .expect("a POST builds"),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every parameter, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub(crate) fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// The values of a list parameter (`InstanceId.1`, `InstanceId.2`, ...), in order.
    pub(crate) fn list(&self, prefix: &str) -> Vec<&str> {
        let mut items: Vec<(u32, &str)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let index = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
                Some((index, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }
}

/// Escapes text for an XML element.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A request id in the form AWS services use.
pub(crate) fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex = b.iter().fold(String::with_capacity(32), |mut hex, x| {
        let _ = write!(hex, "{x:02x}");
        hex
    });
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

pub(crate) fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response<Bytes> {
    aws_response(status, "text/xml", body, request_id)
}

/// `body` as an AWS API's answer: `status`, `content_type` and the request id.
pub(crate) fn aws_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
    request_id: &str,
) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_come_from_the_form_body_and_lists_are_ordered() {
        let request = Request::builder()
            .method("POST")
            .uri("/")
            .body(Bytes::from_static(
                b"Action=DescribeInstances&InstanceId.2=i-b&InstanceId.1=i-a&X=a%20b",
            ))
            .unwrap();
        let params = QueryParams::from_request(&request);
        assert_eq!(params.action(), Some("DescribeInstances"));
        assert_eq!(params.list("InstanceId"), ["i-a", "i-b"]);
        assert_eq!(params.get("X"), Some("a b"));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
        assert_eq!(request_id().len(), 36);
    }
}

//! A plain HTTP/1.1 client (hyper) for checking statuses, headers and bodies exactly.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// A whole response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends one request to `url` (`http://host:port/path`) on a fresh connection.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    let uri: http::Uri = url.parse().expect("a valid URL");
    let authority = uri.authority().expect("URL has host:port").clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(
            uri.path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str),
        )
        .header("host", authority.as_str());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request builds"),
        )
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

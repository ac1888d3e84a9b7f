//! One endpoint for the account's APIs, as LocalStack has one: a request goes to the
//! service its SigV4 credential scope names (`organizations`, `sts`), EC2 otherwise.
//! The region is the credential scope's too, which EC2 reads to pick the region.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use crate::ec2::dispatch::Ec2;
use crate::organizations::service::{Organizations, SIGNING_NAME};
use crate::server::{Connection, Handler};
use crate::sigv4;
use crate::state::MockState;
use crate::sts::service::Sts;

/// The API a request on the EC2 listener is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoutedApi {
    Ec2,
    Organizations,
    Sts,
}

/// Which API a request with these `headers` goes to: the one its SigV4 credential scope
/// names, EC2 otherwise (unsigned, or a scope of another service).
pub(crate) fn routed_api(headers: &HeaderMap) -> RoutedApi {
    match sigv4::credential_scope_in(headers)
        .map(|a| a.service)
        .as_deref()
    {
        Some(SIGNING_NAME) => RoutedApi::Organizations,
        Some("sts") => RoutedApi::Sts,
        _ => RoutedApi::Ec2,
    }
}

/// The EC2 listener's handler.
pub(crate) struct Router {
    ec2: Ec2,
    organizations: Organizations,
    sts: Sts,
}

impl Router {
    pub(crate) fn new(state: &Arc<MockState>) -> Self {
        Router {
            ec2: Ec2::new(state.clone()),
            organizations: Organizations::new(state.clone()),
            sts: Sts::new(state.clone()),
        }
    }
}

impl Handler for Router {
    fn handle(&self, request: Request<Bytes>, connection: &Connection) -> Response<Bytes> {
        match routed_api(request.headers()) {
            RoutedApi::Organizations => self.organizations.handle(request, connection),
            RoutedApi::Sts => self.sts.handle(request, connection),
            RoutedApi::Ec2 => self.ec2.handle(request, connection),
        }
    }
}

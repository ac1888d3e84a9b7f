//! One endpoint for the account's APIs, as LocalStack has one: a request goes to the
//! service its SigV4 credential scope names (`organizations`, `sts`), EC2 otherwise.
//! The region is the credential scope's too, which EC2 reads to pick the region.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};

use crate::ec2::dispatch::Ec2;
use crate::organizations::service::{Organizations, SIGNING_NAME};
use crate::server::{Connection, Handler};
use crate::sigv4;
use crate::state::MockState;
use crate::sts::service::Sts;

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
        let service = sigv4::credential_scope(&request).map(|a| a.service);
        match service.as_deref() {
            Some(SIGNING_NAME) => self.organizations.handle(request, connection),
            Some("sts") => self.sts.handle(request, connection),
            _ => self.ec2.handle(request, connection),
        }
    }
}

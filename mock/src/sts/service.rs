//! STS over the Query protocol, SigV4-verified against the credentials the mock issued
//! (by IMDS, or by `AssumeRole` for role chaining): `GetCallerIdentity`, always allowed
//! as in AWS, and `AssumeRole`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::imds_version::ImdsVersion;
use crate::query::{escape, request_id, xml_response, QueryParams};
use crate::server::{Connection, Handler};
use crate::sigv4;
use crate::state::MockState;
use crate::sts::assume_role;
use crate::sts::error::{auth_error, error_body, StsError, API_VERSION, XMLNS};

pub(crate) struct Sts {
    state: Arc<MockState>,
}

impl Sts {
    pub(crate) fn new(state: Arc<MockState>) -> Self {
        Sts { state }
    }

    /// The answer's body, and which IMDS path served the credentials that signed it
    /// (`None`: an assumed role's session signed it).
    fn answer(
        &self,
        request: &Request<Bytes>,
        request_id: &str,
    ) -> Result<(String, Option<ImdsVersion>), StsError> {
        let now = SystemTime::now();
        let creds =
            sigv4::verify(request, "sts", &self.state.credentials, now).map_err(|failure| {
                tracing::debug!(target: "sts", %failure, "refused");
                auth_error(&failure)
            })?;
        let caller = &creds.principal;
        let params = QueryParams::from_request(request);
        match params.action() {
            Some("GetCallerIdentity") => {
                self.state.events.caller_identity(caller.imds_version());
                let id = &self.state.identity;
                let body = format!(
                    "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    \
                     <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  \
                     </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  \
                     </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
                    escape(&caller.arn(id)),
                    escape(&caller.user_id(id)),
                    escape(caller.account(id)),
                );
                Ok((body, caller.imds_version()))
            }
            Some(assume_role::ACTION) => {
                let body = assume_role::assume_role(&self.state, caller, &params, request_id, now)?;
                Ok((body, caller.imds_version()))
            }
            Some(other) => Err(StsError {
                status: StatusCode::BAD_REQUEST,
                code: "InvalidAction",
                message: format!("Could not find operation {other} for version {API_VERSION}"),
            }),
            None => Err(StsError {
                status: StatusCode::BAD_REQUEST,
                code: "MissingAction",
                message: "Missing Action".to_string(),
            }),
        }
    }
}

impl Handler for Sts {
    fn handle(&self, request: Request<Bytes>, connection: &Connection) -> Response<Bytes> {
        let request_id = request_id();
        let response = match self.answer(&request, &request_id) {
            Ok((body, signed_with)) => {
                let mut response = xml_response(StatusCode::OK, body, &request_id);
                if let Some(version) = signed_with {
                    response.extensions_mut().insert(version);
                }
                response
            }
            Err(error) => xml_response(error.status, error_body(&error, &request_id), &request_id),
        };
        tracing::debug!(
            target: "sts",
            peer = %connection.peer,
            status = response.status().as_u16(),
        );
        response
    }
}

//! The EC2 API for the one mock instance: `DescribeInstances` and
//! `ModifyInstanceMetadataOptions`, EC2 Query protocol, SigV4-verified.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use super::instance::InstanceIdentity;
use super::options::{HopLimit, MetadataOptionsChange};
use super::query::{escape, request_id, xml_response, QueryParams};
use super::server::{Connection, Handler};
use super::sigv4::{self, AuthFailure};
use super::MockState;

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// The EC2 actions the mock serves, as IAM names them after `ec2:`.
pub(crate) const DESCRIBE_INSTANCES: &str = "DescribeInstances";
pub(crate) const MODIFY_INSTANCE_METADATA_OPTIONS: &str = "ModifyInstanceMetadataOptions";

/// An EC2 error as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Ec2Error {
    fn bad_request(code: &'static str, message: String) -> Self {
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

pub struct Ec2 {
    state: Arc<MockState>,
}

impl Ec2 {
    pub fn new(state: Arc<MockState>) -> Self {
        Ec2 { state }
    }

    fn answer(&self, request: &Request<Bytes>, request_id: &str) -> Result<String, Ec2Error> {
        sigv4::verify(request, "ec2", &self.state.credentials, SystemTime::now()).map_err(
            |failure| {
                tracing::debug!(target: "ec2", %failure, "refused");
                auth_error(&failure)
            },
        )?;
        let params = QueryParams::from_request(request);
        match params.action() {
            Some(DESCRIBE_INSTANCES) => self.describe_instances(&params, request_id),
            Some(MODIFY_INSTANCE_METADATA_OPTIONS) => {
                self.modify_metadata_options(&params, request_id)
            }
            Some(other) => Err(Ec2Error::bad_request(
                "InvalidAction",
                format!("The action {other} is not valid for this web service."),
            )),
            None => Err(Ec2Error::bad_request(
                "MissingAction",
                "The request must contain the parameter Action".to_string(),
            )),
        }
    }

    fn authorize(&self, action: &str) -> Result<(), Ec2Error> {
        if !self.state.is_denied(action) {
            return Ok(());
        }
        let id = &self.state.identity;
        Err(Ec2Error {
            status: StatusCode::FORBIDDEN,
            code: "UnauthorizedOperation",
            message: format!(
                "You are not authorized to perform this operation. User: {} is not authorized \
                 to perform: ec2:{action} on resource: arn:aws:ec2:{}:{}:instance/{} because no \
                 identity-based policy allows the ec2:{action} action",
                id.assumed_role_arn(),
                id.region,
                id.account,
                id.instance_id
            ),
        })
    }

    fn check_instance_id(&self, instance_id: &str) -> Result<(), Ec2Error> {
        if !InstanceIdentity::is_well_formed_instance_id(instance_id) {
            return Err(Ec2Error::bad_request(
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{instance_id}\""),
            ));
        }
        if instance_id != self.state.identity.instance_id {
            return Err(Ec2Error::bad_request(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{instance_id}' does not exist"),
            ));
        }
        Ok(())
    }

    fn describe_instances(
        &self,
        params: &QueryParams,
        request_id: &str,
    ) -> Result<String, Ec2Error> {
        for id in params.list("InstanceId") {
            self.check_instance_id(id)?;
        }
        self.authorize(DESCRIBE_INSTANCES)?;
        if params.get("DryRun") == Some("true") {
            return Err(dry_run());
        }
        let filtered_out = (1..)
            .map_while(|n| {
                let name = params.get(&format!("Filter.{n}.Name"))?;
                Some((name, params.list(&format!("Filter.{n}.Value"))))
            })
            .any(|(name, values)| {
                name == "instance-id" && !values.contains(&self.state.identity.instance_id.as_str())
            });
        let reservations = if filtered_out {
            String::new()
        } else {
            self.reservation_xml()
        };
        Ok(format!(
            "<DescribeInstancesResponse xmlns=\"{XMLNS}\">\n  <requestId>{request_id}</requestId>\n  \
             <reservationSet>{reservations}</reservationSet>\n</DescribeInstancesResponse>\n"
        ))
    }

    fn reservation_xml(&self) -> String {
        let id = &self.state.identity;
        let options = self.state.options();
        let state = self.state.options_state(SystemTime::now());
        format!(
            "\n    <item>\n      <reservationId>r-0a1b2c3d4e5f60718</reservationId>\n      \
             <ownerId>{account}</ownerId>\n      <groupSet/>\n      <instancesSet>\n        <item>\n          \
             <instanceId>{instance}</instanceId>\n          <imageId>{image}</imageId>\n          \
             <instanceState><code>16</code><name>running</name></instanceState>\n          \
             <privateDnsName>ip-{dns}.ec2.internal</privateDnsName>\n          \
             <instanceType>{itype}</instanceType>\n          \
             <placement><availabilityZone>{az}</availabilityZone><tenancy>default</tenancy></placement>\n          \
             <privateIpAddress>{ip}</privateIpAddress>\n          \
             <iamInstanceProfile><arn>{profile_arn}</arn><id>{profile_id}</id></iamInstanceProfile>\n          \
             <metadataOptions>\n            <state>{state}</state>\n            \
             <httpTokens>{tokens}</httpTokens>\n            \
             <httpPutResponseHopLimit>{hops}</httpPutResponseHopLimit>\n            \
             <httpEndpoint>{endpoint}</httpEndpoint>\n            \
             <httpProtocolIpv6>{ipv6}</httpProtocolIpv6>\n            \
             <instanceMetadataTags>{tags}</instanceMetadataTags>\n          </metadataOptions>\n        \
             </item>\n      </instancesSet>\n    </item>\n  ",
            account = escape(&id.account),
            instance = escape(&id.instance_id),
            image = escape(&id.image_id),
            dns = escape(&id.private_ip.replace('.', "-")),
            itype = escape(&id.instance_type),
            az = escape(&id.availability_zone),
            ip = escape(&id.private_ip),
            profile_arn = escape(&id.instance_profile_arn()),
            profile_id = escape(&id.instance_profile_id),
            tokens = options.http_tokens,
            hops = options.hop_limit,
            endpoint = options.http_endpoint,
            ipv6 = options.http_protocol_ipv6,
            tags = options.instance_metadata_tags,
        )
    }

    fn modify_metadata_options(
        &self,
        params: &QueryParams,
        request_id: &str,
    ) -> Result<String, Ec2Error> {
        let instance_id = params.get("InstanceId").ok_or_else(|| {
            Ec2Error::bad_request(
                "MissingParameter",
                "The request must contain the parameter InstanceId".to_string(),
            )
        })?;
        self.check_instance_id(instance_id)?;
        let change = parse_change(params)?;
        self.authorize(MODIFY_INSTANCE_METADATA_OPTIONS)?;
        if params.get("DryRun") == Some("true") {
            return Err(dry_run());
        }
        let options = self.state.modify_options(&change);
        tracing::info!(
            target: "ec2",
            hop_limit = %options.hop_limit,
            http_tokens = %options.http_tokens,
            http_endpoint = %options.http_endpoint,
            "metadata options modified"
        );
        Ok(format!(
            "<ModifyInstanceMetadataOptionsResponse xmlns=\"{XMLNS}\">\n  <requestId>{request_id}</requestId>\n  \
             <instanceId>{}</instanceId>\n  <instanceMetadataOptions>\n    <state>pending</state>\n    \
             <httpTokens>{}</httpTokens>\n    <httpPutResponseHopLimit>{}</httpPutResponseHopLimit>\n    \
             <httpEndpoint>{}</httpEndpoint>\n    <httpProtocolIpv6>{}</httpProtocolIpv6>\n    \
             <instanceMetadataTags>{}</instanceMetadataTags>\n  </instanceMetadataOptions>\n\
             </ModifyInstanceMetadataOptionsResponse>\n",
            escape(instance_id),
            options.http_tokens,
            options.hop_limit,
            options.http_endpoint,
            options.http_protocol_ipv6,
            options.instance_metadata_tags,
        ))
    }
}

fn dry_run() -> Ec2Error {
    Ec2Error {
        status: StatusCode::PRECONDITION_FAILED,
        code: "DryRunOperation",
        message: "Request would have succeeded, but DryRun flag is set.".to_string(),
    }
}

/// The change a `ModifyInstanceMetadataOptions` asks for, or `InvalidParameterValue`.
pub(crate) fn parse_change(params: &QueryParams) -> Result<MetadataOptionsChange, Ec2Error> {
    fn field<T: std::str::FromStr>(
        params: &QueryParams,
        name: &str,
        valid: &str,
    ) -> Result<Option<T>, Ec2Error> {
        params
            .get(name)
            .map(|value| {
                value.parse().map_err(|_| {
                    Ec2Error::bad_request(
                        "InvalidParameterValue",
                        format!("Invalid value '{value}' for {name}. Valid values: {valid}"),
                    )
                })
            })
            .transpose()
    }
    Ok(MetadataOptionsChange {
        hop_limit: field::<HopLimit>(params, "HttpPutResponseHopLimit", "integers from 1 to 64")?,
        http_tokens: field(params, "HttpTokens", "optional, required")?,
        http_endpoint: field(params, "HttpEndpoint", "enabled, disabled")?,
        http_protocol_ipv6: field(params, "HttpProtocolIpv6", "enabled, disabled")?,
        instance_metadata_tags: field(params, "InstanceMetadataTags", "enabled, disabled")?,
    })
}

impl Handler for Ec2 {
    fn handle(&self, request: Request<Bytes>, connection: &Connection) -> Response<Bytes> {
        let request_id = request_id();
        let response = match self.answer(&request, &request_id) {
            Ok(body) => xml_response(StatusCode::OK, body, &request_id),
            Err(error) => xml_response(error.status, error_body(&error, &request_id), &request_id),
        };
        tracing::debug!(
            target: "ec2",
            peer = %connection.peer,
            status = response.status().as_u16(),
        );
        response
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &'static str) -> QueryParams {
        QueryParams::from_request(
            &Request::builder()
                .method("POST")
                .body(Bytes::from_static(body.as_bytes()))
                .unwrap(),
        )
    }

    #[test]
    fn out_of_range_hop_limits_are_invalid_parameter_values() {
        for bad in ["0", "65", "three"] {
            let body: &'static str =
                Box::leak(format!("HttpPutResponseHopLimit={bad}").into_boxed_str());
            let err = parse_change(&params(body)).unwrap_err();
            assert_eq!(err.code, "InvalidParameterValue");
            assert!(err.message.contains(bad), "{}", err.message);
        }
        let ok = parse_change(&params("HttpPutResponseHopLimit=3&HttpTokens=required")).unwrap();
        assert_eq!(ok.hop_limit.unwrap().get(), 3);
        assert!(parse_change(&params("HttpTokens=maybe")).is_err());
    }
}

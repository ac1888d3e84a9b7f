//! The EC2 API of the mock's instance and its fleet: `DescribeInstances`,
//! `ModifyInstanceMetadataOptions`, the launch templates and the account's metadata
//! defaults; EC2 Query protocol, SigV4-verified, throttled on demand. The dispatcher
//! answers the instance's own actions and hands the others to their families.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use imds_vocab::{HopLimit, MetadataState};

use crate::ec2::describe_instances::{InstanceView, Query};
use crate::ec2::error::{auth_error, error_body, Ec2Error};
use crate::ec2::launch_templates::{
    CREATE_LAUNCH_TEMPLATE_VERSION, DESCRIBE_LAUNCH_TEMPLATES, DESCRIBE_LAUNCH_TEMPLATE_VERSIONS,
    MODIFY_LAUNCH_TEMPLATE,
};
use crate::ec2::metadata_defaults::{
    GET_INSTANCE_METADATA_DEFAULTS, MODIFY_INSTANCE_METADATA_DEFAULTS,
};
use crate::ec2::regions::{self, DESCRIBE_REGIONS};
use crate::ec2::scope::Scope;
use crate::iam::policy::{Decision, PolicyKind};
use crate::iam::principal::Principal;
use crate::instance::InstanceIdentity;
use crate::options::MetadataOptionsChange;
use crate::query::{escape, request_id, xml_response, QueryParams};
use crate::server::{Connection, Handler};
use crate::sigv4;
use crate::state::{MockState, ScopeRefusal};

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// The EC2 actions on the instance itself, as IAM names them after `ec2:`.
const DESCRIBE_INSTANCES: &str = "DescribeInstances";
const MODIFY_INSTANCE_METADATA_OPTIONS: &str = "ModifyInstanceMetadataOptions";
/// The resource of actions without resource-level permissions (`Describe*`, ...).
const ANY_RESOURCE: &str = "*";

/// The EC2 API's handler: checks the signature, the throttle and the permissions,
/// then hands the action to its family.
pub(crate) struct Ec2 {
    state: Arc<MockState>,
}

/// Whose EC2 a request reaches: an account in a region.
struct Target<'a> {
    scope: &'a Scope,
    account: &'a str,
    region: &'a str,
    /// Whether it is the mock's own account and region (which lists its own instance).
    home: bool,
}

/// How EC2 answers a request for a region the account cannot use.
fn refused(refusal: ScopeRefusal) -> Ec2Error {
    match refusal {
        ScopeRefusal::RegionDisabled => Ec2Error {
            status: StatusCode::UNAUTHORIZED,
            code: "AuthFailure",
            message: "AWS was not able to validate the provided access credentials".to_string(),
        },
        ScopeRefusal::Suspended => Ec2Error {
            status: StatusCode::UNAUTHORIZED,
            code: "OptInRequired",
            message: "You are not subscribed to this service. Please go to http://aws.amazon.com                       to subscribe."
                .to_string(),
        },
    }
}

impl Ec2 {
    pub(crate) fn new(state: Arc<MockState>) -> Self {
        Ec2 { state }
    }

    fn answer(&self, request: &Request<Bytes>, request_id: &str) -> Result<String, Ec2Error> {
        let creds = sigv4::verify(request, "ec2", &self.state.credentials, SystemTime::now())
            .map_err(|failure| {
                tracing::debug!(target: "ec2", %failure, "refused");
                auth_error(&failure)
            })?;
        let caller = &creds.principal;
        let scope_region = sigv4::credential_scope(request)
            .map(|a| a.region)
            .unwrap_or_default();
        let identity = &self.state.identity;
        let account = caller.account(identity);
        let scope = self.state.scope(account, &scope_region).map_err(refused)?;
        let home = self.state.organization.is_none()
            || (account == identity.account && scope_region == identity.region);
        let target = Target {
            scope,
            account,
            region: if home {
                &identity.region
            } else {
                &scope_region
            },
            home,
        };
        scope.throttle.check()?;
        let params = QueryParams::from_request(request);
        if let Some(action) = params.action().filter(|a| scope.denied.contains(a)) {
            return Err(Ec2Error {
                status: StatusCode::FORBIDDEN,
                code: "UnauthorizedOperation",
                message: format!(
                    "You are not authorized to perform this operation. User: {} is not \
                     authorized to perform: ec2:{action} with an explicit deny in a service \
                     control policy",
                    caller.arn(identity),
                ),
            });
        }
        match params.action() {
            Some(DESCRIBE_INSTANCES) => {
                self.describe_instances(caller, &target, &params, request_id)
            }
            Some(MODIFY_INSTANCE_METADATA_OPTIONS) => {
                self.modify_metadata_options(caller, &target, &params, request_id)
            }
            Some(
                action @ (DESCRIBE_LAUNCH_TEMPLATES
                | DESCRIBE_LAUNCH_TEMPLATE_VERSIONS
                | CREATE_LAUNCH_TEMPLATE_VERSION
                | MODIFY_LAUNCH_TEMPLATE),
            ) => self.launch_templates(caller, &target, action, &params, request_id),
            Some(action @ (GET_INSTANCE_METADATA_DEFAULTS | MODIFY_INSTANCE_METADATA_DEFAULTS)) => {
                self.metadata_defaults(caller, &target, action, &params, request_id)
            }
            Some(DESCRIBE_REGIONS) => {
                self.admit(caller, DESCRIBE_REGIONS, ANY_RESOURCE, &params)?;
                let listed = match &self.state.organization {
                    Some(org) => org.regions_of(account, regions::wants_all(&params)),
                    None => vec![(identity.region.clone(), "opt-in-not-required")],
                };
                Ok(envelope(
                    DESCRIBE_REGIONS,
                    request_id,
                    &regions::xml(&listed, &params),
                ))
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

    fn launch_templates(
        &self,
        caller: &Principal,
        target: &Target<'_>,
        action: &str,
        params: &QueryParams,
        request_id: &str,
    ) -> Result<String, Ec2Error> {
        self.admit(caller, action, ANY_RESOURCE, params)?;
        let account = target.account;
        let lock = &target.scope.launch_templates;
        let body = match action {
            DESCRIBE_LAUNCH_TEMPLATES => lock.read().expect("lt lock").describe(params, account),
            DESCRIBE_LAUNCH_TEMPLATE_VERSIONS => lock
                .read()
                .expect("lt lock")
                .describe_versions(params, account),
            CREATE_LAUNCH_TEMPLATE_VERSION => lock
                .write()
                .expect("lt lock")
                .create_version(params, account),
            _ => lock.write().expect("lt lock").modify(params, account),
        }?;
        Ok(envelope(action, request_id, &body))
    }

    fn metadata_defaults(
        &self,
        caller: &Principal,
        target: &Target<'_>,
        action: &str,
        params: &QueryParams,
        request_id: &str,
    ) -> Result<String, Ec2Error> {
        self.admit(caller, action, ANY_RESOURCE, params)?;
        let mut defaults = target
            .scope
            .metadata_defaults
            .write()
            .expect("defaults lock");
        let body = if action == MODIFY_INSTANCE_METADATA_DEFAULTS {
            defaults.modify(params)?;
            "<return>true</return>".to_string()
        } else {
            defaults.xml()
        };
        Ok(envelope(action, request_id, &body))
    }

    /// `UnauthorizedOperation` when `caller` may not do `action` on `resource`, else
    /// `DryRunOperation` for a dry run.
    fn admit(
        &self,
        caller: &Principal,
        action: &str,
        resource: &str,
        params: &QueryParams,
    ) -> Result<(), Ec2Error> {
        self.authorize(caller, action, resource)?;
        if params.get("DryRun") == Some("true") {
            return Err(dry_run());
        }
        Ok(())
    }

    /// The caller's effective permissions (its role's policy and its session policies)
    /// decide, and so does the account's [`MockState::denied`] for everyone.
    fn authorize(&self, caller: &Principal, action: &str, resource: &str) -> Result<(), Ec2Error> {
        let iam_action = format!("ec2:{action}");
        let decision = if self.state.denied.contains(action) {
            Decision::ImplicitDeny(PolicyKind::Identity)
        } else {
            caller
                .permissions(&self.state.iam)
                .evaluate(&iam_action, resource)
        };
        let Some(reason) = decision.reason(&iam_action) else {
            return Ok(());
        };
        let on_resource = if resource == ANY_RESOURCE {
            String::new()
        } else {
            format!(" on resource: {resource}")
        };
        Err(Ec2Error {
            status: StatusCode::FORBIDDEN,
            code: "UnauthorizedOperation",
            message: format!(
                "You are not authorized to perform this operation. User: {} is not authorized \
                 to perform: {iam_action}{on_resource} {reason}",
                caller.arn(&self.state.identity),
            ),
        })
    }

    /// The ARN IAM evaluates an action on `instance_id` against.
    fn instance_arn(target: &Target<'_>, instance_id: &str) -> String {
        format!(
            "arn:aws:ec2:{}:{}:instance/{instance_id}",
            target.region, target.account
        )
    }

    /// Whether `instance_id` is the mock's own instance (`true`) or one of the target's
    /// fleet.
    fn check_instance_id(&self, target: &Target<'_>, instance_id: &str) -> Result<bool, Ec2Error> {
        if !InstanceIdentity::is_well_formed_instance_id(instance_id) {
            return Err(Ec2Error::bad_request(
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{instance_id}\""),
            ));
        }
        if target.home && instance_id == self.state.identity.instance_id {
            return Ok(true);
        }
        if target
            .scope
            .fleet
            .read()
            .expect("fleet lock")
            .get(instance_id)
            .is_some()
        {
            return Ok(false);
        }
        Err(Ec2Error::bad_request(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{instance_id}' does not exist"),
        ))
    }

    fn describe_instances(
        &self,
        caller: &Principal,
        target: &Target<'_>,
        params: &QueryParams,
        request_id: &str,
    ) -> Result<String, Ec2Error> {
        let query = Query::parse(params)?;
        for id in query.ids() {
            self.check_instance_id(target, id)?;
        }
        self.admit(caller, DESCRIBE_INSTANCES, ANY_RESOURCE, params)?;
        let id = &self.state.identity;
        let profile_arn = id.instance_profile_arn();
        let tags = self.state.notices().tags;
        let own = InstanceView {
            id: &id.instance_id,
            account: &id.account,
            image_id: &id.image_id,
            instance_type: &id.instance_type,
            availability_zone: &id.availability_zone,
            private_ip: &id.private_ip,
            instance_profile_arn: &profile_arn,
            instance_profile_id: &id.instance_profile_id,
            options: self.state.options(),
            options_state: self.state.options_state(SystemTime::now()),
            tags: &tags,
        };
        let zone = format!("{}a", target.region);
        let fleet = target.scope.fleet.read().expect("fleet lock");
        let others = fleet.instances().iter().map(|i| InstanceView {
            id: &i.instance_id,
            account: target.account,
            image_id: &id.image_id,
            instance_type: i.instance_type,
            availability_zone: &zone,
            private_ip: &i.private_ip,
            instance_profile_arn: &profile_arn,
            instance_profile_id: &id.instance_profile_id,
            options: i.options,
            options_state: MetadataState::Applied,
            tags: &i.tags,
        });
        let page = query.page(std::iter::once(own).filter(|_| target.home).chain(others));
        Ok(format!(
            "<DescribeInstancesResponse xmlns=\"{XMLNS}\">\n  <requestId>{request_id}</requestId>\n  \
             {page}\n</DescribeInstancesResponse>\n"
        ))
    }

    fn modify_metadata_options(
        &self,
        caller: &Principal,
        target: &Target<'_>,
        params: &QueryParams,
        request_id: &str,
    ) -> Result<String, Ec2Error> {
        let instance_id = params.get("InstanceId").ok_or_else(|| {
            Ec2Error::bad_request(
                "MissingParameter",
                "The request must contain the parameter InstanceId".to_string(),
            )
        })?;
        let own = self.check_instance_id(target, instance_id)?;
        let change = parse_change(params)?;
        let resource = Self::instance_arn(target, instance_id);
        self.admit(caller, MODIFY_INSTANCE_METADATA_OPTIONS, &resource, params)?;
        let options = if own {
            self.state.modify_options(change)
        } else {
            let mut fleet = target.scope.fleet.write().expect("fleet lock");
            let instance = fleet.get_mut(instance_id).expect("checked above");
            instance.options.apply(&change);
            instance.options
        };
        tracing::info!(
            target: "ec2",
            hop_limit = %options.hop_limit,
            http_tokens = %options.http_tokens,
            http_endpoint = %options.http_endpoint,
            "metadata options modified"
        );
        Ok(format!(
            "<ModifyInstanceMetadataOptionsResponse xmlns=\"{XMLNS}\">\n  <requestId>{request_id}</requestId>\n  \
             <instanceId>{}</instanceId>\n  <instanceMetadataOptions>\n    <state>{}</state>\n    \
             <httpTokens>{}</httpTokens>\n    <httpPutResponseHopLimit>{}</httpPutResponseHopLimit>\n    \
             <httpEndpoint>{}</httpEndpoint>\n    <httpProtocolIpv6>{}</httpProtocolIpv6>\n    \
             <instanceMetadataTags>{}</instanceMetadataTags>\n  </instanceMetadataOptions>\n\
             </ModifyInstanceMetadataOptionsResponse>\n",
            escape(instance_id),
            MetadataState::Pending,
            options.http_tokens,
            options.hop_limit,
            options.http_endpoint,
            options.http_protocol_ipv6,
            options.instance_metadata_tags,
        ))
    }
}

/// `<{action}Response>` around `body`, with the request id.
fn envelope(action: &str, request_id: &str, body: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{XMLNS}\">\n  <requestId>{request_id}</requestId>\n  {body}\n</{action}Response>\n"
    )
}

fn dry_run() -> Ec2Error {
    Ec2Error {
        status: StatusCode::PRECONDITION_FAILED,
        code: "DryRunOperation",
        message: "Request would have succeeded, but DryRun flag is set.".to_string(),
    }
}

/// The change a `ModifyInstanceMetadataOptions` asks for, or `InvalidParameterValue`.
fn parse_change(params: &QueryParams) -> Result<MetadataOptionsChange, Ec2Error> {
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

//! AWS Organizations over its JSON protocol (`X-Amz-Target:
//! AWSOrganizationsV20161128.<Action>`), SigV4-verified: `DescribeOrganization` and
//! `ListAccounts` (paged with `MaxResults` and `NextToken`), for principals of the
//! management account. Errors as the service says them: `{"__type": ..., "Message": ...}`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::organizations::error::{auth_error, json_response, OrgError};
use crate::organizations::model::Organization;
use crate::organizations::page_token::PageTokens;
use crate::query::request_id;
use crate::server::{Connection, Handler};
use crate::sigv4;
use crate::state::MockState;

/// The service's name in SigV4 credential scopes.
pub(crate) const SIGNING_NAME: &str = "organizations";
const TARGET_PREFIX: &str = "AWSOrganizationsV20161128.";
/// `ListAccounts`' largest (and default) page.
const MAX_RESULTS: usize = 20;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ListAccountsInput {
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) struct Organizations {
    state: Arc<MockState>,
    tokens: PageTokens,
}

impl Organizations {
    pub(crate) fn new(state: Arc<MockState>) -> Self {
        Organizations {
            state,
            tokens: PageTokens::new(),
        }
    }

    fn answer(&self, request: &Request<Bytes>) -> Result<Value, OrgError> {
        let creds = sigv4::verify(
            request,
            SIGNING_NAME,
            &self.state.credentials,
            SystemTime::now(),
        )
        .map_err(|failure| auth_error(&failure))?;
        let action = request
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
            .ok_or_else(|| {
                OrgError::new(
                    "UnknownOperationException",
                    "X-Amz-Target must name an AWSOrganizationsV20161128 operation",
                )
            })?;
        let org = self.state.organization.as_ref().ok_or_else(|| {
            OrgError::new(
                "AWSOrganizationsNotInUseException",
                "Your account is not a member of an organization.",
            )
        })?;
        let caller_account = creds.principal.account(&self.state.identity);
        match action {
            "DescribeOrganization" => Ok(describe_organization(org)),
            "ListAccounts" => {
                if caller_account != org.management {
                    return Err(OrgError::new(
                        "AccessDeniedException",
                        "You don't have permissions to access this resource.",
                    ));
                }
                let input: ListAccountsInput = if request.body().is_empty() {
                    ListAccountsInput::default()
                } else {
                    serde_json::from_slice(request.body()).map_err(|e| {
                        OrgError::new("SerializationException", format!("the request body: {e}"))
                    })?
                };
                let caller = creds.principal.arn(&self.state.identity);
                list_accounts(org, &input, &self.tokens, &caller)
            }
            other => Err(OrgError::new(
                "UnknownOperationException",
                format!("The operation {other} is not known to this mock"),
            )),
        }
    }
}

fn describe_organization(org: &Organization) -> Value {
    let management = &org.accounts[0];
    json!({
        "Organization": {
            "Id": org.id,
            "Arn": org.arn(),
            "FeatureSet": "ALL",
            "MasterAccountArn": org.account_arn(&management.id),
            "MasterAccountId": management.id,
            "MasterAccountEmail": management.email,
            "AvailablePolicyTypes": [{"Type": "SERVICE_CONTROL_POLICY", "Status": "ENABLED"}],
        }
    })
}

fn list_accounts(
    org: &Organization,
    input: &ListAccountsInput,
    tokens: &PageTokens,
    caller: &str,
) -> Result<Value, OrgError> {
    let page = match input.max_results {
        None => MAX_RESULTS,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_RESULTS).contains(n))
            .ok_or_else(|| {
                OrgError::invalid(
                    "INVALID_INPUT",
                    format!("MaxResults {n}: it must be from 1 to {MAX_RESULTS}"),
                )
            })?,
    };
    let start = match &input.next_token {
        None => 0,
        Some(token) => tokens
            .open(caller, token)
            .filter(|i| *i < org.accounts.len())
            .ok_or_else(|| {
                OrgError::invalid(
                    "INVALID_NEXT_TOKEN",
                    "You specified an invalid value for the nextToken parameter.",
                )
            })?,
    };
    let end = (start + page).min(org.accounts.len());
    let accounts: Vec<Value> = org.accounts[start..end]
        .iter()
        .map(|a| {
            json!({
                "Id": a.id,
                "Arn": org.account_arn(&a.id),
                "Email": a.email,
                "Name": a.name,
                "Status": a.status,
                "JoinedMethod": a.joined,
                "JoinedTimestamp": a.joined_at,
            })
        })
        .collect();
    let mut out = json!({ "Accounts": accounts });
    if end < org.accounts.len() {
        out["NextToken"] = json!(tokens.issue(caller, end));
    }
    Ok(out)
}

impl Handler for Organizations {
    fn handle(&self, request: Request<Bytes>, connection: &Connection) -> Response<Bytes> {
        let request_id = request_id();
        let response = match self.answer(&request) {
            Ok(body) => json_response(StatusCode::OK, &body, &request_id),
            Err(e) => e.response(&request_id),
        };
        tracing::debug!(
            target: "organizations",
            peer = %connection.peer,
            status = response.status().as_u16(),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OrganizationSpec;

    fn org(accounts: usize) -> Organization {
        let spec = OrganizationSpec {
            accounts,
            regions: vec!["us-east-1".into()],
            fleet: 0,
            seed: 1,
        };
        Organization::generate(&spec, "123456789012", "us-east-1", 0.0)
    }

    #[test]
    fn accounts_are_paged_and_bad_pages_are_refused() {
        let org = org(45);
        let tokens = PageTokens::new();
        let me = "arn:aws:sts::123456789012:assumed-role/r/i-1";
        let list = |max_results: Option<i64>, next_token: Option<String>| {
            list_accounts(
                &org,
                &ListAccountsInput {
                    max_results,
                    next_token,
                },
                &tokens,
                me,
            )
        };
        let first = list(None, None).unwrap();
        assert_eq!(first["Accounts"].as_array().unwrap().len(), 20);
        assert_eq!(first["Accounts"][0]["Id"], "123456789012");
        let token = first["NextToken"].as_str().unwrap().to_owned();
        let second = list(Some(20), Some(token)).unwrap();
        assert_eq!(second["Accounts"][0]["Id"], first_id_at(&org, 20));
        let third = list(Some(20), second["NextToken"].as_str().map(str::to_owned)).unwrap();
        assert_eq!(third["Accounts"].as_array().unwrap().len(), 5);
        assert!(third.get("NextToken").is_none());
        // Past the end: sealed, but no account is there.
        for bad in [
            "x".to_owned(),
            "imdsh-accounts-20".to_owned(),
            tokens.issue(me, 45),
            tokens.issue("arn:aws:sts::123456789012:assumed-role/r/other", 20),
            String::new(),
        ] {
            let e = list(None, Some(bad.clone())).unwrap_err();
            assert_eq!(e.reason, Some("INVALID_NEXT_TOKEN"), "{bad}");
        }
        for bad in [0, 21, -1, i64::MAX, i64::MIN] {
            let e = list(Some(bad), None).unwrap_err();
            assert_eq!(e.code, "InvalidInputException", "{bad}");
        }
        assert_eq!(
            describe_organization(&org)["Organization"]["MasterAccountId"],
            "123456789012"
        );
    }

    fn first_id_at(org: &Organization, i: usize) -> String {
        org.accounts[i].id.clone()
    }
}

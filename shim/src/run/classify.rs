//! Whether a failed command's output shows that it got no AWS credentials, and which client said so.

use imds_vocab::Client;

/// A credentials failure found in a command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFailure {
    /// Who said it.
    pub client: Client,
    /// The line that says it, trimmed (and shortened to [`MAX_EVIDENCE`] characters).
    pub evidence: String,
}

/// The longest evidence line kept.
pub(crate) const MAX_EVIDENCE: usize = 300;

/// Messages that mean "no credentials", lower-cased, with the client that prints them;
/// the first that a line contains decides. Each client's message at hop limit one too
/// low, captured from the real client (`fixtures/clients/`, `make client-fixtures`), is
/// recognised: see the tests.
const SIGNATURES: &[(&str, Client)] = &[
    // botocore's NoCredentialsError: the AWS CLI adds its advice, a Python program
    // shows the exception (`botocore.exceptions.NoCredentialsError: Unable to ...`).
    (
        "unable to locate credentials. you can configure credentials by running",
        Client::Cli,
    ),
    ("nocredentialserror", Client::Boto3),
    ("unable to locate credentials", Client::Boto3),
    // aws-config: the IMDS provider, the chain, and CredentialsError::not_loaded; and
    // `imds-shim probe`'s own words for a dropped token response.
    ("failed to load credentials from imds", Client::RustSdk),
    ("the credential provider was not enabled", Client::RustSdk),
    (
        "no providers in chain provided credentials",
        Client::RustSdk,
    ),
    ("failed to load imds session token", Client::RustSdk),
    ("no token response within", Client::RustSdk),
    // aws-sdk-go-v2: ec2rolecreds and the credentials cache.
    ("no ec2 imds role found", Client::GoSdkV2),
    ("failed to refresh cached credentials", Client::GoSdkV2),
    // aws-sdk-go v1: the chain with nothing found, or ec2rolecreds' own error.
    (
        "nocredentialproviders: no valid providers in chain",
        Client::GoSdkV1,
    ),
    ("ec2rolerequesterror", Client::GoSdkV1),
    // aws-sdk-core for Ruby: the signer without credentials (Aws::Errors::
    // MissingCredentialsError, or Aws::Sigv4's when called directly).
    (
        "unable to sign request without credentials set",
        Client::RubySdk,
    ),
    (
        "aws::sigv4::errors::missingcredentialserror",
        Client::RubySdk,
    ),
];

/// The first line of `output` that shows a credentials failure, if any.
pub fn classify(output: &str) -> Option<CredentialFailure> {
    output.lines().find_map(|line| {
        let lower = line.to_lowercase();
        SIGNATURES
            .iter()
            .find(|(needle, _)| lower.contains(needle))
            .map(|&(_, client)| CredentialFailure {
                client,
                evidence: shorten(line.trim()),
            })
    })
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(MAX_EVIDENCE) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use strum::VariantArray;

    fn client_of(output: &str) -> Option<Client> {
        classify(output).map(|f| f.client)
    }

    /// Each client's message at hop limit one too low, as captured from the real client
    /// at a real leaf (`make client-fixtures`), in `fixtures/clients/<name>.txt`.
    fn captured(client: Client) -> String {
        let path = format!(
            "{}/../fixtures/clients/{}.txt",
            env!("CARGO_MANIFEST_DIR"),
            client.name()
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_captured_message_names_its_client() {
        for &client in Client::VARIANTS {
            let message = captured(client);
            assert!(!message.trim().is_empty(), "{client}: empty fixture");
            let found = classify(&message).unwrap_or_else(|| panic!("{client}: {message}"));
            assert_eq!(found.client, client, "{client}: {message}");
            // As an Earthly log shows it: every line prefixed.
            let logged = message.lines().fold(String::new(), |mut logged, l| {
                let _ = writeln!(logged, "+probe | {l}");
                logged
            });
            assert_eq!(
                classify(&logged).map(|f| f.client),
                Some(client),
                "{client}"
            );
        }
    }

    #[test]
    fn aws_cli() {
        let out = "+probe | --> RUN aws sts get-caller-identity\n\
                   +probe | \n\
                   +probe | Unable to locate credentials. You can configure credentials by running \"aws configure\".\n\
                   +probe | ERROR Earthfile line 12:4\n";
        let f = classify(out).unwrap();
        assert_eq!(f.client, Client::Cli);
        assert_eq!(
            f.evidence,
            "+probe | Unable to locate credentials. You can configure credentials by running \"aws configure\"."
        );
    }

    #[test]
    fn rust_sdk() {
        for line in [
            "Error: dispatch failure: failed to load credentials from IMDS",
            "Error: failed to construct request: the credential provider was not enabled: no providers in chain provided credentials",
            "CredentialsNotLoaded(CredentialsNotLoaded { source: \"no providers in chain provided credentials\" })",
        ] {
            assert_eq!(client_of(line), Some(Client::RustSdk), "{line}");
        }
    }

    #[test]
    fn go_sdk() {
        for (line, client) in [
            ("operation error STS: GetCallerIdentity, failed to resolve service endpoint, get identity: get credentials: failed to refresh cached credentials, no EC2 IMDS role found, operation error ec2imds: GetMetadata, request canceled, context deadline exceeded", Client::GoSdkV2),
            ("caused by: EC2RoleRequestError: no EC2 instance role found", Client::GoSdkV1),
        ] {
            assert_eq!(client_of(line), Some(client), "{line}");
        }
        let f =
            classify("x\nfailed to refresh cached credentials, no EC2 IMDS role found\n").unwrap();
        assert_eq!(
            f.evidence,
            "failed to refresh cached credentials, no EC2 IMDS role found"
        );
    }

    #[test]
    fn other_failures_are_not_credentials_failures() {
        for out in [
            "",
            "error: could not compile `foo`",
            "An error occurred (AccessDenied) when calling the GetObject operation: Access Denied",
            "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
            "credentials ok",
        ] {
            assert_eq!(classify(out), None, "{out}");
        }
    }

    #[test]
    fn the_first_matching_line_wins_and_long_lines_are_cut() {
        let long = format!("Unable to locate credentials {}", "x".repeat(500));
        let f = classify(&format!("no EC2 IMDS role found\n{long}")).unwrap();
        assert_eq!(f.client, Client::GoSdkV2);
        let f = classify(&long).unwrap();
        assert_eq!(f.evidence.chars().count(), MAX_EVIDENCE + 3);
    }
}

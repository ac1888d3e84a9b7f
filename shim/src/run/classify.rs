//! Whether a failed command's output shows that it got no AWS credentials, and which client said so.

/// The AWS client whose message was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The AWS CLI (botocore).
    Cli,
    /// The AWS SDK for Rust (aws-config).
    RustSdk,
    /// The AWS SDK for Go (v1 or v2), as Earthly itself and many tools use.
    GoSdk,
}

impl Client {
    /// The client's name in a sentence.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cli => "the AWS CLI",
            Self::RustSdk => "the AWS SDK for Rust",
            Self::GoSdk => "the AWS SDK for Go",
        }
    }
}

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

/// Messages that mean "no credentials", lower-cased, with the client that prints them.
const SIGNATURES: &[(&str, Client)] = &[
    // botocore's NoCredentialsError.
    ("unable to locate credentials", Client::Cli),
    // aws-config: the IMDS provider, the chain, and CredentialsError::not_loaded.
    ("failed to load credentials from imds", Client::RustSdk),
    ("the credential provider was not enabled", Client::RustSdk),
    (
        "no providers in chain provided credentials",
        Client::RustSdk,
    ),
    ("failed to load imds session token", Client::RustSdk),
    // aws-sdk-go(-v2): ec2rolecreds and the credentials cache.
    ("no ec2 imds role found", Client::GoSdk),
    ("failed to refresh cached credentials", Client::GoSdk),
    ("ec2rolerequesterror", Client::GoSdk),
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

    fn client_of(output: &str) -> Option<Client> {
        classify(output).map(|f| f.client)
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
        for line in [
            "operation error STS: GetCallerIdentity, failed to resolve service endpoint, get identity: get credentials: failed to refresh cached credentials, no EC2 IMDS role found, operation error ec2imds: GetMetadata, request canceled, context deadline exceeded",
            "NoCredentialProviders: no valid providers in chain\ncaused by: EC2RoleRequestError: no EC2 instance role found",
        ] {
            assert_eq!(client_of(line), Some(Client::GoSdk), "{line}");
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
        assert_eq!(f.client, Client::GoSdk);
        let f = classify(&long).unwrap();
        assert_eq!(f.evidence.chars().count(), MAX_EVIDENCE + 3);
    }
}

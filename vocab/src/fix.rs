//! The AWS CLI command that gives an instance the hop limit its builds need.

use std::fmt;

use crate::hop_limit::HopLimit;
use crate::options::HttpTokens;

/// `aws ec2 modify-instance-metadata-options ...` for one instance: the hop limit, the
/// tokens mode when it is to change too, and the endpoint enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixCommand<'a> {
    /// The instance (`i-...`, or a placeholder such as `<instance-id>`).
    pub instance_id: &'a str,
    /// The hop limit to set.
    pub hop_limit: HopLimit,
    /// `--http-tokens`, when the command sets it.
    pub http_tokens: Option<HttpTokens>,
}

impl<'a> FixCommand<'a> {
    /// Sets the hop limit only (and keeps the endpoint enabled).
    pub fn hop_limit(instance_id: &'a str, hop_limit: HopLimit) -> Self {
        FixCommand {
            instance_id,
            hop_limit,
            http_tokens: None,
        }
    }

    /// Also sets `HttpTokens`.
    pub fn with_http_tokens(self, http_tokens: HttpTokens) -> Self {
        FixCommand {
            http_tokens: Some(http_tokens),
            ..self
        }
    }
}

impl fmt::Display for FixCommand<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "aws ec2 modify-instance-metadata-options --instance-id {} \
             --http-put-response-hop-limit {}",
            self.instance_id, self.hop_limit
        )?;
        if let Some(tokens) = self.http_tokens {
            write!(f, " --http-tokens {tokens}")?;
        }
        f.write_str(" --http-endpoint enabled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_commands() {
        let three = HopLimit::new(3).unwrap();
        assert_eq!(
            FixCommand::hop_limit("i-0123456789abcdef0", three).to_string(),
            "aws ec2 modify-instance-metadata-options --instance-id i-0123456789abcdef0 \
             --http-put-response-hop-limit 3 --http-endpoint enabled"
        );
        assert_eq!(
            FixCommand::hop_limit("i-1", three)
                .with_http_tokens(HttpTokens::Required)
                .to_string(),
            "aws ec2 modify-instance-metadata-options --instance-id i-1 \
             --http-put-response-hop-limit 3 --http-tokens required --http-endpoint enabled"
        );
    }
}

//! `DescribeInstances` over the mock's own instance and its fleet: `InstanceId.N`,
//! filters (`instance-id`, `tag:KEY`, `tag-key`, `instance-type`,
//! `instance-state-name`, with `*` wildcards) and EC2's paging (`MaxResults` 5..=1000,
//! an opaque `NextToken`; one instance per reservation).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;

use imds_vocab::MetadataState;

use crate::ec2::error::Ec2Error;
use crate::options::MetadataOptions;
use crate::query::{escape, QueryParams};

/// EC2's bounds for `MaxResults`.
const MAX_RESULTS: std::ops::RangeInclusive<usize> = 5..=1000;
/// What a page token encodes, before base64.
const TOKEN_PREFIX: &str = "imdsh-page:";

/// One instance as `DescribeInstances` lists it.
pub(crate) struct InstanceView<'a> {
    pub(crate) id: &'a str,
    pub(crate) account: &'a str,
    pub(crate) image_id: &'a str,
    pub(crate) instance_type: &'a str,
    pub(crate) availability_zone: &'a str,
    pub(crate) private_ip: &'a str,
    pub(crate) instance_profile_arn: &'a str,
    pub(crate) instance_profile_id: &'a str,
    pub(crate) options: MetadataOptions,
    pub(crate) options_state: MetadataState,
    pub(crate) tags: &'a BTreeMap<String, String>,
}

impl InstanceView<'_> {
    fn reservation_xml(&self, out: &mut String) {
        let o = &self.options;
        let _ = write!(
            out,
            "\n    <item>\n      <reservationId>r-{reservation}</reservationId>\n      \
             <ownerId>{account}</ownerId>\n      <groupSet/>\n      <instancesSet>\n        <item>\n          \
             <instanceId>{instance}</instanceId>\n          <imageId>{image}</imageId>\n          \
             <instanceState><code>16</code><name>running</name></instanceState>\n          \
             <privateDnsName>ip-{dns}.ec2.internal</privateDnsName>\n          \
             <instanceType>{itype}</instanceType>\n          \
             <placement><availabilityZone>{az}</availabilityZone><tenancy>default</tenancy></placement>\n          \
             <privateIpAddress>{ip}</privateIpAddress>\n          \
             <iamInstanceProfile><arn>{profile_arn}</arn><id>{profile_id}</id></iamInstanceProfile>\n",
            reservation = escape(self.id.trim_start_matches("i-")),
            account = escape(self.account),
            instance = escape(self.id),
            image = escape(self.image_id),
            dns = escape(&self.private_ip.replace('.', "-")),
            itype = escape(self.instance_type),
            az = escape(self.availability_zone),
            ip = escape(self.private_ip),
            profile_arn = escape(self.instance_profile_arn),
            profile_id = escape(self.instance_profile_id),
        );
        if !self.tags.is_empty() {
            out.push_str("          <tagSet>");
            for (key, value) in self.tags {
                let _ = write!(
                    out,
                    "<item><key>{}</key><value>{}</value></item>",
                    escape(key),
                    escape(value)
                );
            }
            out.push_str("</tagSet>\n");
        }
        let _ = write!(
            out,
            "          <metadataOptions>\n            <state>{state}</state>\n            \
             <httpTokens>{tokens}</httpTokens>\n            \
             <httpPutResponseHopLimit>{hops}</httpPutResponseHopLimit>\n            \
             <httpEndpoint>{endpoint}</httpEndpoint>\n            \
             <httpProtocolIpv6>{ipv6}</httpProtocolIpv6>\n            \
             <instanceMetadataTags>{tags}</instanceMetadataTags>\n          </metadataOptions>\n        \
             </item>\n      </instancesSet>\n    </item>\n  ",
            state = self.options_state,
            tokens = o.http_tokens,
            hops = o.hop_limit,
            endpoint = o.http_endpoint,
            ipv6 = o.http_protocol_ipv6,
            tags = o.instance_metadata_tags,
        );
    }
}

/// One `Filter.N`: a name and the values any of which matches.
struct Filter {
    name: String,
    values: Vec<String>,
}

impl Filter {
    fn matches(&self, view: &InstanceView<'_>) -> bool {
        let any = |field: &str| self.values.iter().any(|v| wildcard(v, field));
        match self.name.as_str() {
            "instance-id" => any(view.id),
            "instance-type" => any(view.instance_type),
            "instance-state-name" => any("running"),
            "tag-key" => view.tags.keys().any(|k| any(k)),
            name => {
                let key = name.strip_prefix("tag:").expect("checked when parsed");
                view.tags.get(key).is_some_and(|v| any(v))
            }
        }
    }
}

/// EC2's filter wildcards: `*` any run of characters (`?` is not modelled).
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| wildcard(rest, &tail[i..]))
        }
    }
}

/// A parsed `DescribeInstances` request.
pub(crate) struct Query {
    ids: Vec<String>,
    filters: Vec<Filter>,
    max_results: Option<usize>,
    start: usize,
}

impl Query {
    pub(crate) fn parse(params: &QueryParams) -> Result<Self, Ec2Error> {
        /// The filters the mock understands, besides `tag:KEY`.
        const KNOWN: &[&str] = &[
            "instance-id",
            "instance-type",
            "instance-state-name",
            "tag-key",
        ];
        let ids: Vec<String> = params
            .list("InstanceId")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let max_results = params
            .get("MaxResults")
            .map(|value| {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| MAX_RESULTS.contains(n))
                    .ok_or_else(|| {
                        Ec2Error::bad_request(
                            "InvalidParameterValue",
                            format!(
                                "Value ( {value} ) for parameter maxResults is invalid. \
                                 Expecting a value between {} and {}.",
                                MAX_RESULTS.start(),
                                MAX_RESULTS.end()
                            ),
                        )
                    })
            })
            .transpose()?;
        if max_results.is_some() && !ids.is_empty() {
            return Err(Ec2Error::bad_request(
                "InvalidParameterCombination",
                "The parameter instancesSet cannot be used with the parameter maxResults".into(),
            ));
        }
        let filters = (1..)
            .map_while(|n| {
                let name = params.get(&format!("Filter.{n}.Name"))?;
                Some(Filter {
                    name: name.to_owned(),
                    values: params
                        .list(&format!("Filter.{n}.Value"))
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect::<Vec<_>>();
        if let Some(bad) = filters
            .iter()
            .find(|f| !KNOWN.contains(&f.name.as_str()) && !f.name.starts_with("tag:"))
        {
            return Err(Ec2Error::bad_request(
                "InvalidParameterValue",
                format!("The filter '{}' is invalid", bad.name),
            ));
        }
        let start = params
            .get("NextToken")
            .map(|token| {
                decode_token(token).ok_or_else(|| {
                    Ec2Error::bad_request(
                        "InvalidParameterValue",
                        format!("Invalid value '{token}' for nextToken"),
                    )
                })
            })
            .transpose()?
            .unwrap_or(0);
        Ok(Query {
            ids,
            filters,
            max_results,
            start,
        })
    }

    pub(crate) fn ids(&self) -> &[String] {
        &self.ids
    }

    fn wants(&self, view: &InstanceView<'_>) -> bool {
        (self.ids.is_empty() || self.ids.iter().any(|id| id == view.id))
            && self.filters.iter().all(|f| f.matches(view))
    }

    /// The page of `instances` this request asks for, as the `reservationSet` and the
    /// `nextToken` elements.
    pub(crate) fn page<'a>(&self, instances: impl Iterator<Item = InstanceView<'a>>) -> String {
        let take = self.max_results.unwrap_or(usize::MAX);
        let mut out = String::from("<reservationSet>");
        let mut matching = instances.filter(|v| self.wants(v)).skip(self.start);
        for view in matching.by_ref().take(take) {
            view.reservation_xml(&mut out);
        }
        out.push_str("</reservationSet>");
        if matching.next().is_some() {
            let _ = write!(
                out,
                "\n  <nextToken>{}</nextToken>",
                encode_token(self.start + take)
            );
        }
        out
    }
}

fn encode_token(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN_PREFIX}{offset}"))
}

fn decode_token(token: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix(TOKEN_PREFIX)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_tokens() {
        assert!(wildcard("earthly-*", "earthly-run"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a*c*e", "abcde"));
        assert!(!wildcard("earthly-*", "docker-run"));
        assert!(!wildcard("run", "runner"));
        assert_eq!(decode_token(&encode_token(1000)), Some(1000));
        assert_eq!(decode_token("bm9wZQ=="), None);
    }
}

//! Launch templates, as EC2 keeps them: numbered versions, a default and a latest, each
//! version's `LaunchTemplateData` (the subset build fleets set, `MetadataOptions`
//! included). `DescribeLaunchTemplates`, `DescribeLaunchTemplateVersions`,
//! `CreateLaunchTemplateVersion` (with `SourceVersion`: the new version inherits every
//! parameter it does not give) and `ModifyLaunchTemplate` (`SetDefaultVersion`).

use std::fmt::Write as _;
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use crate::ec2::error::Ec2Error;
use crate::ec2::launch_template_data::LaunchTemplateData;
use crate::query::{escape, QueryParams};
use crate::timestamp::iso8601;

pub(crate) const DESCRIBE_LAUNCH_TEMPLATES: &str = "DescribeLaunchTemplates";
pub(crate) const DESCRIBE_LAUNCH_TEMPLATE_VERSIONS: &str = "DescribeLaunchTemplateVersions";
pub(crate) const CREATE_LAUNCH_TEMPLATE_VERSION: &str = "CreateLaunchTemplateVersion";
pub(crate) const MODIFY_LAUNCH_TEMPLATE: &str = "ModifyLaunchTemplate";

/// A launch template to start with: version 1 (the default) holds `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplateSpec {
    /// `LaunchTemplateName`.
    pub name: String,
    /// What version 1 holds.
    pub data: LaunchTemplateData,
}

impl LaunchTemplateSpec {
    /// The id of the template `name` in the mock's own account and region, derived from
    /// its name so that it is the same in every run.
    pub fn id_for(name: &str) -> String {
        Self::id_in(None, name)
    }

    /// The id of the template `name` in `scope` (account, region; `None`: the mock's
    /// own), the same in every run. EC2's ids are unique across accounts and regions,
    /// and so are these: the same template name gives each scope its own id.
    pub fn id_in(scope: Option<(&str, &str)>, name: &str) -> String {
        let mut hash = Sha256::new();
        if let Some((account, region)) = scope {
            hash.update(format!("{account}/{region}/").as_bytes());
        }
        hash.update(name.as_bytes());
        format!("lt-0{}", hex::encode(&hash.finalize()[..8]))
    }
}

#[derive(Clone, Debug)]
struct Version {
    number: u64,
    description: Option<String>,
    data: LaunchTemplateData,
    created: SystemTime,
}

#[derive(Clone, Debug)]
struct Template {
    id: String,
    name: String,
    default_version: u64,
    versions: Vec<Version>,
    created: SystemTime,
}

impl Template {
    fn latest(&self) -> u64 {
        self.versions.last().map_or(1, |v| v.number)
    }

    fn version(&self, selector: &str) -> Result<&Version, Ec2Error> {
        let number = match selector {
            "$Latest" => self.latest(),
            "$Default" => self.default_version,
            n => n.parse().map_err(|_| {
                Ec2Error::bad_request(
                    "InvalidLaunchTemplateId.VersionNotFound",
                    format!(
                        "Could not find launch template version {n} for launch template ID {}",
                        self.id
                    ),
                )
            })?,
        };
        self.versions
            .iter()
            .find(|v| v.number == number)
            .ok_or_else(|| {
                Ec2Error::bad_request(
                    "InvalidLaunchTemplateId.VersionNotFound",
                    format!(
                        "Could not find launch template version {number} for launch template ID {}",
                        self.id
                    ),
                )
            })
    }

    fn summary_xml(&self, tag: &str, account: &str) -> String {
        format!(
            "<{tag}><createTime>{}</createTime><createdBy>arn:aws:iam::{account}:root</createdBy>\
             <defaultVersionNumber>{}</defaultVersionNumber><latestVersionNumber>{}</latestVersionNumber>\
             <launchTemplateId>{}</launchTemplateId><launchTemplateName>{}</launchTemplateName></{tag}>",
            iso8601(self.created),
            self.default_version,
            self.latest(),
            self.id,
            escape(&self.name)
        )
    }

    fn version_xml(&self, version: &Version, tag: &str, account: &str) -> String {
        let mut out = format!(
            "<{tag}><createTime>{}</createTime><createdBy>arn:aws:iam::{account}:root</createdBy>\
             <defaultVersion>{}</defaultVersion>",
            iso8601(version.created),
            version.number == self.default_version
        );
        version.data.xml(&mut out);
        let _ = write!(
            out,
            "<launchTemplateId>{}</launchTemplateId><launchTemplateName>{}</launchTemplateName>",
            self.id,
            escape(&self.name)
        );
        if let Some(d) = &version.description {
            let _ = write!(
                out,
                "<versionDescription>{}</versionDescription>",
                escape(d)
            );
        }
        let _ = write!(
            out,
            "<versionNumber>{}</versionNumber></{tag}>",
            version.number
        );
        out
    }
}

/// Whether `id` has the shape of a launch template id (`lt-` and 17 hex digits).
fn is_well_formed_id(id: &str) -> bool {
    id.strip_prefix("lt-")
        .is_some_and(|hex| hex.len() == 17 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every launch template of the mock's account and region.
#[derive(Clone, Debug, Default)]
pub struct LaunchTemplates {
    templates: Vec<Template>,
}

impl LaunchTemplates {
    /// The templates of `specs` in the mock's own account and region, each at version 1.
    pub fn new(specs: &[LaunchTemplateSpec]) -> Self {
        Self::new_in(None, specs)
    }

    /// The templates of `specs` in `scope` (see [`LaunchTemplateSpec::id_in`]), each at
    /// version 1.
    pub fn new_in(scope: Option<(&str, &str)>, specs: &[LaunchTemplateSpec]) -> Self {
        let now = SystemTime::now();
        LaunchTemplates {
            templates: specs
                .iter()
                .map(|spec| Template {
                    id: LaunchTemplateSpec::id_in(scope, &spec.name),
                    name: spec.name.clone(),
                    default_version: 1,
                    versions: vec![Version {
                        number: 1,
                        description: None,
                        data: spec.data.clone(),
                        created: now,
                    }],
                    created: now,
                })
                .collect(),
        }
    }

    /// The data of `name`'s version `selector` (`$Default`, `$Latest` or a number).
    pub fn data(&self, name: &str, selector: &str) -> Option<LaunchTemplateData> {
        let template = self.templates.iter().find(|t| t.name == name)?;
        template.version(selector).ok().map(|v| v.data.clone())
    }

    /// `name`'s (default, latest) version numbers.
    pub fn versions(&self, name: &str) -> Option<(u64, u64)> {
        let t = self.templates.iter().find(|t| t.name == name)?;
        Some((t.default_version, t.latest()))
    }

    /// The template `LaunchTemplateId` or `LaunchTemplateName` names.
    fn find(&self, params: &QueryParams) -> Result<usize, Ec2Error> {
        match (
            params.get("LaunchTemplateId"),
            params.get("LaunchTemplateName"),
        ) {
            (Some(_), Some(_)) => Err(Ec2Error::bad_request(
                "InvalidParameterCombination",
                "Specify either the launch template ID or the launch template name, but not both."
                    .into(),
            )),
            (Some(id), None) => {
                if !is_well_formed_id(id) {
                    return Err(Ec2Error::bad_request(
                        "InvalidLaunchTemplateId.Malformed",
                        format!("The specified ID for the launch template ({id}) is not valid. The ID must be in the form lt-xxxxxxxxxxxxxxxxx."),
                    ));
                }
                self.templates.iter().position(|t| t.id == id).ok_or_else(|| {
                    Ec2Error::bad_request(
                        "InvalidLaunchTemplateId.NotFound",
                        format!("The specified launch template, with template ID {id}, does not exist."),
                    )
                })
            }
            (None, Some(name)) => self
                .templates
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| name_not_found(name)),
            (None, None) => Err(Ec2Error::bad_request(
                "MissingParameter",
                "The request must contain the parameter LaunchTemplateName or LaunchTemplateId"
                    .into(),
            )),
        }
    }

    pub(crate) fn describe(&self, params: &QueryParams, account: &str) -> Result<String, Ec2Error> {
        let ids = params.list("LaunchTemplateId");
        let names = params.list("LaunchTemplateName");
        for id in &ids {
            if !is_well_formed_id(id) {
                return Err(Ec2Error::bad_request(
                    "InvalidLaunchTemplateId.Malformed",
                    format!("The specified ID for the launch template ({id}) is not valid. The ID must be in the form lt-xxxxxxxxxxxxxxxxx."),
                ));
            }
        }
        let wanted = |t: &Template| {
            (ids.is_empty() && names.is_empty())
                || ids.contains(&t.id.as_str())
                || names.contains(&t.name.as_str())
        };
        let found: Vec<&Template> = self.templates.iter().filter(|t| wanted(t)).collect();
        if found.len() < ids.len() + names.len() {
            return Err(Ec2Error::bad_request(
                "InvalidLaunchTemplateName.NotFoundException",
                "At least one of the launch templates specified in the request does not exist."
                    .into(),
            ));
        }
        let items: String = found
            .iter()
            .map(|t| t.summary_xml("item", account))
            .collect();
        Ok(format!("<launchTemplates>{items}</launchTemplates>"))
    }

    pub(crate) fn describe_versions(
        &self,
        params: &QueryParams,
        account: &str,
    ) -> Result<String, Ec2Error> {
        let template = &self.templates[self.find(params)?];
        let selectors = params.list("LaunchTemplateVersion");
        let versions: Vec<&Version> = if selectors.is_empty() {
            template.versions.iter().collect()
        } else {
            selectors
                .iter()
                .map(|s| template.version(s))
                .collect::<Result<_, _>>()?
        };
        let items: String = versions
            .iter()
            .map(|v| template.version_xml(v, "item", account))
            .collect();
        Ok(format!(
            "<launchTemplateVersionSet>{items}</launchTemplateVersionSet>"
        ))
    }

    pub(crate) fn create_version(
        &mut self,
        params: &QueryParams,
        account: &str,
    ) -> Result<String, Ec2Error> {
        let at = self.find(params)?;
        let given = LaunchTemplateData::from_params(params)?;
        let template = &mut self.templates[at];
        let data = match params.get("SourceVersion") {
            Some(source) => template.version(source)?.data.overlaid_with(&given),
            None => given,
        };
        let version = Version {
            number: template.latest() + 1,
            description: params.get("VersionDescription").map(str::to_owned),
            data,
            created: SystemTime::now(),
        };
        template.versions.push(version);
        let template = &self.templates[at];
        let version = template.versions.last().expect("just pushed");
        Ok(template.version_xml(version, "launchTemplateVersion", account))
    }

    pub(crate) fn modify(
        &mut self,
        params: &QueryParams,
        account: &str,
    ) -> Result<String, Ec2Error> {
        let at = self.find(params)?;
        let template = &mut self.templates[at];
        if let Some(selector) = params.get("SetDefaultVersion") {
            let number = template.version(selector)?.number;
            template.default_version = number;
        }
        Ok(self.templates[at].summary_xml("launchTemplate", account))
    }
}

fn name_not_found(name: &str) -> Ec2Error {
    Ec2Error::bad_request(
        "InvalidLaunchTemplateName.NotFoundException",
        format!("The specified launch template, with template name {name}, does not exist."),
    )
}

#[cfg(test)]
mod tests {
    use imds_vocab::{HopLimit, Toggle};

    use super::*;
    use crate::ec2::launch_template_data::TemplateMetadataOptions;

    fn store() -> LaunchTemplates {
        LaunchTemplates::new(&[LaunchTemplateSpec {
            name: "ci".into(),
            data: LaunchTemplateData {
                image_id: Some("ami-1".into()),
                instance_type: Some("c6i.large".into()),
                metadata_options: Some(TemplateMetadataOptions {
                    hop_limit: Some(HopLimit::MIN),
                    instance_metadata_tags: Some(Toggle::Enabled),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }])
    }

    #[test]
    fn a_version_from_a_source_inherits_all_but_what_it_gives() {
        let mut lts = store();
        lts.create_version(
            &QueryParams::from_body(
                "LaunchTemplateName=ci&SourceVersion=%24Default&\
                 LaunchTemplateData.MetadataOptions.HttpPutResponseHopLimit=3&\
                 LaunchTemplateData.MetadataOptions.HttpTokens=required",
            ),
            "123456789012",
        )
        .unwrap();
        let v2 = lts.data("ci", "$Latest").unwrap();
        assert_eq!(v2.image_id.as_deref(), Some("ami-1"));
        assert_eq!(v2.instance_type.as_deref(), Some("c6i.large"));
        let m = v2.metadata_options.unwrap();
        assert_eq!(m.hop_limit.unwrap().get(), 3);
        // MetadataOptions is replaced whole, as EC2 does.
        assert_eq!(m.instance_metadata_tags, None);
        assert_eq!(lts.versions("ci"), Some((1, 2)));
        lts.modify(
            &QueryParams::from_body("LaunchTemplateName=ci&SetDefaultVersion=2"),
            "1",
        )
        .unwrap();
        assert_eq!(lts.versions("ci"), Some((2, 2)));
    }

    #[test]
    fn ids_are_unique_across_accounts_and_regions() {
        let home = LaunchTemplateSpec::id_for("ci");
        let a = LaunchTemplateSpec::id_in(Some(("111122223333", "us-east-1")), "ci");
        let b = LaunchTemplateSpec::id_in(Some(("111122223333", "eu-west-1")), "ci");
        let c = LaunchTemplateSpec::id_in(Some(("444455556666", "us-east-1")), "ci");
        let ids = std::collections::BTreeSet::from([&home, &a, &b, &c]);
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| is_well_formed_id(id)));
        assert_eq!(
            a,
            LaunchTemplateSpec::id_in(Some(("111122223333", "us-east-1")), "ci")
        );
    }

    #[test]
    fn unknown_and_malformed_templates_have_ec2s_codes() {
        let lts = store();
        let code = |body: &str| {
            lts.describe_versions(&QueryParams::from_body(body), "1")
                .unwrap_err()
                .code
        };
        assert_eq!(
            code("LaunchTemplateName=nope"),
            "InvalidLaunchTemplateName.NotFoundException"
        );
        assert_eq!(
            code("LaunchTemplateId=lt-12"),
            "InvalidLaunchTemplateId.Malformed"
        );
        assert_eq!(
            code("LaunchTemplateId=lt-0123456789abcdef0"),
            "InvalidLaunchTemplateId.NotFound"
        );
        assert_eq!(
            code("LaunchTemplateName=ci&LaunchTemplateVersion.1=9"),
            "InvalidLaunchTemplateId.VersionNotFound"
        );
        assert_eq!(code(""), "MissingParameter");
    }
}

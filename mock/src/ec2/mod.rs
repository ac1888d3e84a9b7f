//! The EC2 API: the dispatcher, the families of actions it hands requests to
//! (`DescribeInstances`, launch templates, the account's metadata defaults), the fleet
//! they serve, the throttle, and the error every one of them answers with. Each account
//! and region has its own [`scope::Scope`]: which one a request reaches is said by its
//! signature (the caller's account, the credential scope's region).

pub(crate) mod denied;
pub(crate) mod describe_instances;
pub(crate) mod dispatch;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod launch_template_data;
pub(crate) mod launch_templates;
pub(crate) mod metadata_defaults;
pub(crate) mod regions;
pub(crate) mod scope;
pub(crate) mod throttle;

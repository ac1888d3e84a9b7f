//! Instance tags that say where an instance came from and what its builds need: EC2's
//! own (`aws:` tags it puts on instances it launches for a group or from a template)
//! and this project's.

/// The Auto Scaling group that launched the instance (set by EC2 Auto Scaling).
pub const ASG: &str = "aws:autoscaling:groupName";
/// The launch template the instance was launched from (set by EC2).
pub const LAUNCH_TEMPLATE_ID: &str = "aws:ec2launchtemplate:id";
/// The launch template's version it was launched from (set by EC2).
pub const LAUNCH_TEMPLATE_VERSION: &str = "aws:ec2launchtemplate:version";
/// Where the instance's builds run: a topology of the baseline, e.g. `earthly-run`.
pub const TOPOLOGY: &str = "imds-shim:topology";
/// The instance's name, as the console shows it.
pub const NAME: &str = "Name";

//! The timestamps IMDS, STS and EC2 write.

use std::time::SystemTime;

use time::macros::format_description;
use time::OffsetDateTime;

/// `2026-11-29T12:00:00Z`, the form IMDS and STS use.
pub(crate) fn iso8601(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("a UTC timestamp formats")
}

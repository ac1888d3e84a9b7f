//! `DescribeRegions`: the regions the caller's account may use, with their opt-in
//! status; with `AllRegions=true` the ones it has not enabled too.

use std::fmt::Write as _;

use crate::query::{escape, QueryParams};

pub(crate) const DESCRIBE_REGIONS: &str = "DescribeRegions";

/// Whether the request asks for the regions not enabled too.
pub(crate) fn wants_all(params: &QueryParams) -> bool {
    params.get("AllRegions") == Some("true")
}

/// `<regionInfo>` of `regions` (name, opt-in status), narrowed to the `RegionName.N`
/// the request names, if any.
pub(crate) fn xml(regions: &[(String, &str)], params: &QueryParams) -> String {
    let named = params.list("RegionName");
    let mut out = String::from("<regionInfo>");
    for (name, status) in regions {
        if !named.is_empty() && !named.contains(&name.as_str()) {
            continue;
        }
        let _ = write!(
            out,
            "<item><regionName>{0}</regionName><regionEndpoint>ec2.{0}.amazonaws.com</regionEndpoint>\
             <optInStatus>{1}</optInStatus></item>",
            escape(name),
            status
        );
    }
    out.push_str("</regionInfo>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_listed_and_narrowed_by_name() {
        let regions = vec![
            ("us-east-1".to_owned(), "opt-in-not-required"),
            ("af-south-1".to_owned(), "not-opted-in"),
        ];
        let all = xml(&regions, &QueryParams::from_body("Action=DescribeRegions"));
        assert!(all.contains("<regionName>af-south-1</regionName>"));
        assert!(all.contains("<optInStatus>not-opted-in</optInStatus>"));
        let one = xml(
            &regions,
            &QueryParams::from_body("Action=DescribeRegions&RegionName.1=us-east-1"),
        );
        assert!(one.contains("us-east-1") && !one.contains("af-south-1"));
        assert!(wants_all(&QueryParams::from_body("AllRegions=true")));
        assert!(!wants_all(&QueryParams::from_body("AllRegions=false")));
    }
}

//! What an instance's metadata says besides its identity and role, as EC2 serves it and
//! as tools that watch for it (node termination handlers, drainers) read it: the
//! instance's tags (`tags/instance`, only with `InstanceMetadataTags=enabled`), a Spot
//! interruption notice (`spot/instance-action`) and a rebalance recommendation
//! (`events/recommendations/rebalance`). Each path is 404 until it has something to say.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::Serialize;

use super::credentials::iso8601;

/// What a Spot interruption will do to the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpotAction {
    Terminate,
    Stop,
    Hibernate,
}

impl SpotAction {
    /// As `spot/instance-action` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpotAction::Terminate => "terminate",
            SpotAction::Stop => "stop",
            SpotAction::Hibernate => "hibernate",
        }
    }
}

impl fmt::Display for SpotAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpotAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            SpotAction::Terminate,
            SpotAction::Stop,
            SpotAction::Hibernate,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("{s:?}: a Spot action is terminate, stop or hibernate"))
    }
}

/// The notices and tags an instance's metadata serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notices {
    /// The instance's tags (served only with `InstanceMetadataTags=enabled`).
    pub tags: BTreeMap<String, String>,
    /// A Spot interruption notice: what happens, and when.
    pub spot_action: Option<(SpotAction, SystemTime)>,
    /// A rebalance recommendation, and when it was made.
    pub rebalance: Option<SystemTime>,
}

impl Notices {
    /// `spot/instance-action`: `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`.
    pub(crate) fn spot_json(&self) -> Option<String> {
        self.spot_action.map(|(action, time)| {
            serde_json::json!({"action": action.as_str(), "time": iso8601(time)}).to_string()
        })
    }

    /// `events/recommendations/rebalance`: `{"noticeTime": "2020-10-27T08:22:00Z"}`.
    pub(crate) fn rebalance_json(&self) -> Option<String> {
        self.rebalance
            .map(|time| serde_json::json!({"noticeTime": iso8601(time)}).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_documented_formats() {
        let at = UNIX_EPOCH + Duration::from_secs(1_505_722_920);
        let notices = Notices {
            spot_action: Some((SpotAction::Terminate, at)),
            rebalance: Some(at),
            ..Default::default()
        };
        assert_eq!(
            notices.spot_json().unwrap(),
            r#"{"action":"terminate","time":"2017-09-18T08:22:00Z"}"#
        );
        assert_eq!(
            notices.rebalance_json().unwrap(),
            r#"{"noticeTime":"2017-09-18T08:22:00Z"}"#
        );
        assert_eq!(Notices::default().spot_json(), None);
        assert_eq!("stop".parse::<SpotAction>(), Ok(SpotAction::Stop));
        assert!("reboot".parse::<SpotAction>().is_err());
    }
}

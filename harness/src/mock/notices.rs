//! What an instance's metadata says besides its identity and role, as EC2 serves it and
//! as tools that watch for it (node termination handlers, drainers) read it: the
//! instance's tags (`tags/instance`, only with `InstanceMetadataTags=enabled`), a Spot
//! interruption notice (`spot/instance-action`), a rebalance recommendation
//! (`events/recommendations/rebalance`), the Auto Scaling target lifecycle state
//! (`autoscaling/target-lifecycle-state`, only for an instance in a group) and scheduled
//! maintenance (`events/maintenance/scheduled`). Each path but the last is 404 until it
//! has something to say; maintenance is a JSON list, `[]` when nothing is scheduled.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use super::credentials::iso8601;

/// A parse error of one of the notices' values, naming the values allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: {what} is one of {}", allowed.join(", "))]
pub struct NoticeValueError {
    what: &'static str,
    value: String,
    allowed: Vec<&'static str>,
}

/// Generates an enum of the documented values of one notice field, spelled as EC2 does.
macro_rules! notice_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// As the instance metadata spells it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = NoticeValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    NoticeValueError {
                        what: $what,
                        value: s.to_string(),
                        allowed: Self::ALL.iter().map(|v| v.as_str()).collect(),
                    }
                })
            }
        }
    };
}

notice_enum!(
    /// What a Spot interruption will do to the instance.
    SpotAction, "a Spot action", {
        Terminate => "terminate",
        Stop => "stop",
        Hibernate => "hibernate",
    }
);

notice_enum!(
    /// `autoscaling/target-lifecycle-state`: the state Auto Scaling is moving the
    /// instance to.
    LifecycleState, "a target lifecycle state", {
        InService => "InService",
        Terminated => "Terminated",
        WarmedStopped => "Warmed:Stopped",
        WarmedRunning => "Warmed:Running",
        WarmedHibernated => "Warmed:Hibernated",
        WarmedTerminated => "Warmed:Terminated",
    }
);

notice_enum!(
    /// The `Code` of a scheduled maintenance event.
    MaintenanceCode, "a maintenance event code", {
        InstanceReboot => "instance-reboot",
        SystemReboot => "system-reboot",
        SystemMaintenance => "system-maintenance",
        InstanceRetirement => "instance-retirement",
        InstanceStop => "instance-stop",
    }
);

/// One scheduled maintenance event, as `events/maintenance/scheduled` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceEvent {
    pub code: MaintenanceCode,
    pub description: String,
    /// `instance-event-` and 17 hex digits.
    pub event_id: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl MaintenanceEvent {
    /// An event of `code` in the window `not_before..not_after`, with an id derived from
    /// its content (so the same event has the same id in every run).
    pub fn new(code: MaintenanceCode, not_before: SystemTime, not_after: SystemTime) -> Self {
        use sha2::{Digest, Sha256};
        let seconds = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let digest = Sha256::digest(
            format!("{code} {} {}", seconds(not_before), seconds(not_after)).as_bytes(),
        );
        MaintenanceEvent {
            code,
            description: format!("scheduled {}", code.as_str().replace('-', " ")),
            event_id: format!("instance-event-{}", &hex::encode(digest)[..17]),
            not_before,
            not_after,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "NotBefore": maintenance_time(self.not_before),
            "Code": self.code.as_str(),
            "Description": self.description,
            "EventId": self.event_id,
            "NotAfter": maintenance_time(self.not_after),
            "State": "active",
        })
    }
}

/// `21 Jan 2019 09:00:43 GMT`, the maintenance events' time format.
fn maintenance_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(time::macros::format_description!(
        "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .expect("a fixed format")
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
    /// The Auto Scaling target lifecycle state; `None`: not in an Auto Scaling group.
    pub lifecycle: Option<LifecycleState>,
    /// Scheduled maintenance events.
    pub maintenance: Vec<MaintenanceEvent>,
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

    /// `events/maintenance/scheduled`: a JSON list of the events, `[]` without any.
    pub(crate) fn maintenance_json(&self) -> String {
        let events: Vec<_> = self
            .maintenance
            .iter()
            .map(MaintenanceEvent::json)
            .collect();
        serde_json::to_string_pretty(&events).expect("JSON serialises")
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

    #[test]
    fn maintenance_events_are_listed_as_ec2_documents_them() {
        let at = UNIX_EPOCH + Duration::from_secs(1_548_061_243);
        let event = MaintenanceEvent::new(
            MaintenanceCode::SystemReboot,
            at,
            at + Duration::from_secs(1000),
        );
        assert_eq!(
            event,
            MaintenanceEvent::new(event.code, at, event.not_after)
        );
        assert_eq!(event.event_id.len(), "instance-event-".len() + 17);
        let notices = Notices {
            maintenance: vec![event.clone()],
            ..Default::default()
        };
        let listed: serde_json::Value = serde_json::from_str(&notices.maintenance_json()).unwrap();
        assert_eq!(
            listed,
            serde_json::json!([{
                "NotBefore": "21 Jan 2019 09:00:43 GMT",
                "Code": "system-reboot",
                "Description": "scheduled system reboot",
                "EventId": event.event_id,
                "NotAfter": "21 Jan 2019 09:17:23 GMT",
                "State": "active",
            }])
        );
        assert_eq!(Notices::default().maintenance_json(), "[]");
        assert_eq!(
            "Warmed:Stopped".parse::<LifecycleState>(),
            Ok(LifecycleState::WarmedStopped)
        );
        let err = "Running".parse::<LifecycleState>().unwrap_err().to_string();
        assert!(
            err.contains("InService, Terminated, Warmed:Stopped"),
            "{err}"
        );
    }
}

//! What an instance's metadata says besides its identity and role, as EC2 serves it and
//! as tools that watch for it (node termination handlers, drainers) read it: the
//! instance's tags (`tags/instance`, only with `InstanceMetadataTags=enabled`), a Spot
//! interruption notice (`spot/instance-action`), a rebalance recommendation
//! (`events/recommendations/rebalance`), the Auto Scaling target lifecycle state
//! (`autoscaling/target-lifecycle-state`, only for an instance in a group) and scheduled
//! maintenance (`events/maintenance/scheduled`). Each path but the last is 404 until it
//! has something to say; maintenance is a JSON list, `[]` when nothing is scheduled.

use std::collections::BTreeMap;
use std::time::SystemTime;

use strum::{Display, EnumString, IntoStaticStr, VariantArray};

use crate::timestamp::iso8601;

/// A parse error of one of the notices' values, naming the values allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: {what} is one of {}", allowed.join(", "))]
pub struct NoticeValueError {
    what: &'static str,
    value: String,
    allowed: Vec<&'static str>,
}

impl NoticeValueError {
    /// `value` is none of `T`'s names; `what` says what a `T` is.
    fn new<T>(what: &'static str, value: &str) -> Self
    where
        T: VariantArray + Copy + Into<&'static str>,
    {
        NoticeValueError {
            what,
            value: value.to_string(),
            allowed: T::VARIANTS.iter().map(|&v| v.into()).collect(),
        }
    }

    fn spot_action(value: &str) -> Self {
        Self::new::<SpotAction>("a Spot action", value)
    }

    fn lifecycle_state(value: &str) -> Self {
        Self::new::<LifecycleState>("a target lifecycle state", value)
    }

    fn maintenance_code(value: &str) -> Self {
        Self::new::<MaintenanceCode>("a maintenance event code", value)
    }
}

/// What a Spot interruption will do to the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumString, IntoStaticStr, Display, VariantArray)]
#[strum(
    serialize_all = "lowercase",
    parse_err_ty = NoticeValueError,
    parse_err_fn = NoticeValueError::spot_action
)]
pub enum SpotAction {
    /// `terminate`.
    Terminate,
    /// `stop`.
    Stop,
    /// `hibernate`.
    Hibernate,
}

/// `autoscaling/target-lifecycle-state`: the state Auto Scaling is moving the
/// instance to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumString, IntoStaticStr, Display, VariantArray)]
#[strum(
    parse_err_ty = NoticeValueError,
    parse_err_fn = NoticeValueError::lifecycle_state
)]
pub enum LifecycleState {
    /// `InService`.
    InService,
    /// `Terminated`.
    Terminated,
    /// `Warmed:Stopped`.
    #[strum(to_string = "Warmed:Stopped")]
    WarmedStopped,
    /// `Warmed:Running`.
    #[strum(to_string = "Warmed:Running")]
    WarmedRunning,
    /// `Warmed:Hibernated`.
    #[strum(to_string = "Warmed:Hibernated")]
    WarmedHibernated,
    /// `Warmed:Terminated`.
    #[strum(to_string = "Warmed:Terminated")]
    WarmedTerminated,
}

/// The `Code` of a scheduled maintenance event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumString, IntoStaticStr, Display, VariantArray)]
#[strum(
    serialize_all = "kebab-case",
    parse_err_ty = NoticeValueError,
    parse_err_fn = NoticeValueError::maintenance_code
)]
pub enum MaintenanceCode {
    /// `instance-reboot`.
    InstanceReboot,
    /// `system-reboot`.
    SystemReboot,
    /// `system-maintenance`.
    SystemMaintenance,
    /// `instance-retirement`.
    InstanceRetirement,
    /// `instance-stop`.
    InstanceStop,
}

/// One scheduled maintenance event, as `events/maintenance/scheduled` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceEvent {
    /// What the event is.
    pub code: MaintenanceCode,
    /// What the console says of it.
    pub description: String,
    /// `instance-event-` and 17 hex digits.
    pub event_id: String,
    /// When the window opens.
    pub not_before: SystemTime,
    /// When the window closes.
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
            description: format!("scheduled {}", code.to_string().replace('-', " ")),
            event_id: format!("instance-event-{}", &hex::encode(digest)[..17]),
            not_before,
            not_after,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "NotBefore": maintenance_time(self.not_before),
            "Code": <&str>::from(self.code),
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
            serde_json::json!({"action": <&str>::from(action), "time": iso8601(time)}).to_string()
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
        let at = UNIX_EPOCH + Duration::from_mins(25_095_382);
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

    /// Each value is spelled as the instance metadata spells it, and parses back.
    #[test]
    fn every_value_has_ec2s_spelling() {
        fn names<T>() -> Vec<String>
        where
            T: VariantArray
                + Copy
                + std::fmt::Display
                + std::str::FromStr
                + PartialEq
                + std::fmt::Debug,
            <T as std::str::FromStr>::Err: std::fmt::Debug,
        {
            T::VARIANTS
                .iter()
                .map(|v| {
                    let name = v.to_string();
                    assert_eq!(name.parse::<T>().unwrap(), *v);
                    name
                })
                .collect()
        }
        assert_eq!(names::<SpotAction>(), ["terminate", "stop", "hibernate"]);
        assert_eq!(
            names::<LifecycleState>(),
            [
                "InService",
                "Terminated",
                "Warmed:Stopped",
                "Warmed:Running",
                "Warmed:Hibernated",
                "Warmed:Terminated"
            ]
        );
        assert_eq!(
            names::<MaintenanceCode>(),
            [
                "instance-reboot",
                "system-reboot",
                "system-maintenance",
                "instance-retirement",
                "instance-stop"
            ]
        );
        assert_eq!(
            <&str>::from(LifecycleState::WarmedHibernated),
            "Warmed:Hibernated"
        );
        assert_eq!(
            "reboot".parse::<SpotAction>().unwrap_err().to_string(),
            "\"reboot\": a Spot action is one of terminate, stop, hibernate"
        );
        assert_eq!(
            "reboot".parse::<MaintenanceCode>().unwrap_err().to_string(),
            "\"reboot\": a maintenance event code is one of instance-reboot, system-reboot, \
             system-maintenance, instance-retirement, instance-stop"
        );
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

//! `HttpPutResponseHopLimit`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::options::OptionError;

/// `HttpPutResponseHopLimit`: the IP TTL of the IMDSv2 token response, 1..=64. A
/// process behind D routing hops needs at least D + 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct HopLimit(u8);

impl HopLimit {
    /// EC2's smallest (and default) hop limit.
    pub const MIN: HopLimit = HopLimit(1);
    /// EC2's largest hop limit.
    pub const MAX: HopLimit = HopLimit(64);

    /// `value` if it is in 1..=64.
    pub fn new(value: u32) -> Result<Self, OptionError> {
        if (u32::from(Self::MIN.0)..=u32::from(Self::MAX.0)).contains(&value) {
            Ok(HopLimit(value as u8))
        } else {
            Err(OptionError::HopLimitOutOfRange(value.to_string()))
        }
    }

    /// The hop limit a process behind `routing_hops` routers needs: one more.
    pub fn for_routing_hops(routing_hops: usize) -> Result<Self, OptionError> {
        u32::try_from(routing_hops)
            .ok()
            .and_then(|d| d.checked_add(1))
            .map_or_else(
                || {
                    Err(OptionError::HopLimitOutOfRange(format!(
                        "{routing_hops} + 1"
                    )))
                },
                HopLimit::new,
            )
    }

    /// The number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// One less, if that is still a hop limit.
    pub fn below(self) -> Option<HopLimit> {
        (self > Self::MIN).then(|| HopLimit(self.0 - 1))
    }

    /// The routers a token response crosses from IMDS with this hop limit before it is
    /// dropped: a place behind fewer than this gets its token.
    pub fn routing_hops_reached(self) -> u8 {
        self.0 - 1
    }

    /// Every hop limit from 1 to 64, in order.
    pub fn all() -> impl DoubleEndedIterator<Item = HopLimit> {
        (Self::MIN.0..=Self::MAX.0).map(HopLimit)
    }
}

impl TryFrom<u32> for HopLimit {
    type Error = OptionError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        HopLimit::new(value)
    }
}

impl From<HopLimit> for u32 {
    fn from(value: HopLimit) -> u32 {
        value.0.into()
    }
}

impl From<HopLimit> for i32 {
    fn from(value: HopLimit) -> i32 {
        value.0.into()
    }
}

impl FromStr for HopLimit {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: u32 = s
            .trim()
            .parse()
            .map_err(|_| OptionError::HopLimitOutOfRange(s.to_string()))?;
        HopLimit::new(value)
    }
}

impl fmt::Display for HopLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_one_to_sixty_four() {
        assert!(HopLimit::new(0).is_err());
        assert_eq!(HopLimit::new(1).unwrap().get(), 1);
        assert_eq!(HopLimit::new(64).unwrap().get(), 64);
        assert!(HopLimit::new(65).is_err());
        assert!("x".parse::<HopLimit>().is_err());
        assert!("-1".parse::<HopLimit>().is_err());
        assert_eq!(" 7".parse::<HopLimit>().unwrap().get(), 7);
        assert_eq!(HopLimit::all().count(), 64);
        assert_eq!(
            HopLimit::new(65).unwrap_err().to_string(),
            "hop limit \"65\" is not in 1..=64: HttpPutResponseHopLimit is an integer from 1 to 64"
        );
    }

    #[test]
    fn neighbours_and_depths() {
        assert_eq!(HopLimit::MIN.below(), None);
        assert_eq!(HopLimit::new(3).unwrap().below(), HopLimit::new(2).ok());
        assert_eq!(HopLimit::for_routing_hops(0).unwrap(), HopLimit::MIN);
        assert_eq!(HopLimit::for_routing_hops(63).unwrap(), HopLimit::MAX);
        assert!(HopLimit::for_routing_hops(64).is_err());
        assert!(HopLimit::for_routing_hops(usize::MAX).is_err());
        assert_eq!(HopLimit::new(4).unwrap().routing_hops_reached(), 3);
    }

    #[test]
    fn serialises_as_a_number_and_refuses_out_of_range() {
        let h = HopLimit::new(3).unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), "3");
        assert_eq!(serde_json::from_str::<HopLimit>("3").unwrap(), h);
        assert!(serde_json::from_str::<HopLimit>("0").is_err());
        assert!(serde_json::from_str::<HopLimit>("65").is_err());
    }
}

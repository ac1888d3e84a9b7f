//! EC2's request throttling, on demand: a share of API calls answered with
//! `RequestLimitExceeded` (HTTP 503), drawn from a seeded generator so a run can be
//! repeated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use http::StatusCode;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng};

use crate::ec2::error::Ec2Error;

/// Which calls are refused.
#[derive(Debug)]
pub(crate) struct Throttle {
    rate: f64,
    rng: Mutex<ChaCha8Rng>,
    refused: AtomicU64,
}

impl Throttle {
    /// Refuses `rate` (0.0..1.0) of the calls.
    pub(crate) fn new(rate: f64, seed: u64) -> Self {
        Throttle {
            rate,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            refused: AtomicU64::new(0),
        }
    }

    /// `RequestLimitExceeded` for this call, or nothing.
    pub(crate) fn check(&self) -> Result<(), Ec2Error> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let refuse = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random_bool(self.rate);
        if !refuse {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(Ec2Error {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "RequestLimitExceeded",
            message: "Request limit exceeded.".to_string(),
        })
    }

    /// Calls refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_the_share_asked_for_is_refused() {
        let throttle = Throttle::new(0.3, 1);
        let refused = (0..10_000).filter(|_| throttle.check().is_err()).count();
        assert!((2700..3300).contains(&refused), "{refused}");
        assert_eq!(throttle.refused(), refused as u64);
        let never = Throttle::new(0.0, 1);
        assert!((0..100).all(|_| never.check().is_ok()));
    }
}

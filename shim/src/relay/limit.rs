//! The per-grant rate limit: a token bucket.

use std::time::Instant;

/// Requests per second and the burst allowed above that rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: u32,
}

/// A token bucket for one grant.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_the_sustained_rate() {
        let t = Instant::now();
        let mut b = TokenBucket::new(
            RateLimit {
                per_second: 10.0,
                burst: 3,
            },
            t,
        );
        assert!((0..3).all(|_| b.try_take(t)));
        assert!(!b.try_take(t));
        assert!(b.try_take(t + Duration::from_millis(100)));
        assert!(!b.try_take(t + Duration::from_millis(100)));
        // Refills up to the burst only.
        let later = t + Duration::from_mins(1);
        assert!((0..3).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }
}

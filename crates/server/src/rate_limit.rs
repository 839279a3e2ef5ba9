//! Per-account request rate limits: a token bucket per account, refilled at
//! `requests_per_sec` up to `burst`; a request finding the bucket empty is answered 429
//! with `Retry-After` (whole seconds until a token is back). One consumer once stored
//! 332,052 jobs in 15 s; this bounds how fast any account can ask for anything.
//!
//! The rate is the deployment's (`--rate-limit-rps`, `--rate-limit-burst`) unless the
//! consumer's profile sets `rate_limit_rps` (operators only): then that rate, with a
//! burst of twice the rate, and 0 lifts the limit for that consumer.
//!
//! Operators (keys with any `.all` permission) and node agents (keys with
//! `nodes.update`, whose sync loop the protocol already paces: one sync per node per
//! interval, long-polled) are exempt. In memory, per server: with several servers behind
//! a balancer an account gets the rate on each. The check is one uncontended mutex and a
//! few float operations, far below the cost of a signature check.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gantry_types::AccountId;

/// Rate limit settings of a deployment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimits {
    /// Sustained requests per second per account; 0 turns the limit off.
    pub requests_per_sec: f64,
    /// Requests an idle account may make at once.
    pub burst: f64,
}

impl Default for RateLimits {
    /// Off: a lab running Gantry for itself and the benchmarks need no limit; a
    /// deployment open to tenants sets one (`--rate-limit-rps`).
    fn default() -> Self {
        Self { requests_per_sec: 0.0, burst: 0.0 }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every account that made a request recently.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<AccountId, Bucket>>,
}

/// Buckets kept before full ones are dropped (a full bucket is the same as none).
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self { limits, buckets: Mutex::default() }
    }

    /// The deployment's limits.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Takes a token for `account` at `now`, or says how long until one is back.
    #[cfg(test)]
    pub fn check(&self, account: AccountId, now: Instant) -> Result<(), Duration> {
        self.check_with(account, self.limits, now)
    }

    /// [`Self::check`] under `limits` (the account's own, from its profile).
    pub fn check_with(&self, account: AccountId, limits: RateLimits, now: Instant) -> Result<(), Duration> {
        let RateLimits { requests_per_sec: rate, burst } = limits;
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = burst.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(account).or_insert(Bucket { tokens: burst, at: now });
        let refilled = (bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }
}

/// The limits of an account whose profile says `profile_rps` (`None`: the
/// deployment's; `Some(0)`: none; `Some(r)`: `r` per second, burst `2r`).
pub fn limits_for(deployment: RateLimits, profile_rps: Option<f64>) -> RateLimits {
    match profile_rps {
        None => deployment,
        Some(rate) => RateLimits { requests_per_sec: rate, burst: rate * 2.0 },
    }
}

/// Whether a key's permissions exempt it (operators, node agents).
pub fn exempt(permissions: &[String]) -> bool {
    permissions.iter().any(|p| p.ends_with(".all") || p.starts_with("nodes.update."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(RateLimits { requests_per_sec: 10.0, burst: 5.0 });
        let (a, b) = (AccountId::new(), AccountId::new());
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter.check(b, t0).is_ok(), "accounts are independent");
        assert!(limiter.check(a, t0 + Duration::from_millis(100)).is_ok(), "one token back after 1/rate");
        assert!(limiter.check(a, t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_profile_rate_overrides_the_deployment() {
        let deployment = RateLimits { requests_per_sec: 100.0, burst: 200.0 };
        assert_eq!(limits_for(deployment, None), deployment);
        assert_eq!(limits_for(deployment, Some(1.0)), RateLimits { requests_per_sec: 1.0, burst: 2.0 });
        let limiter = RateLimiter::new(deployment);
        let (slow, free) = (AccountId::new(), AccountId::new());
        let t0 = Instant::now();
        assert!(limiter.check_with(slow, limits_for(deployment, Some(1.0)), t0).is_ok());
        assert!(limiter.check_with(slow, limits_for(deployment, Some(1.0)), t0).is_ok());
        assert!(limiter.check_with(slow, limits_for(deployment, Some(1.0)), t0).is_err(), "burst of 2");
        for _ in 0..1_000 {
            assert!(limiter.check_with(free, limits_for(deployment, Some(0.0)), t0).is_ok(), "0 lifts the limit");
        }
    }

    #[test]
    fn zero_is_off_and_operators_and_nodes_are_exempt() {
        let limiter = RateLimiter::new(RateLimits::default());
        let a = AccountId::new();
        for _ in 0..10_000 {
            assert!(limiter.check(a, Instant::now()).is_ok());
        }
        assert!(exempt(&["jobs.read.all".into()]));
        assert!(exempt(&["nodes.update.own".into()]));
        assert!(!exempt(&["jobs.create.own".into(), "nodes.read.own".into()]));
    }
}

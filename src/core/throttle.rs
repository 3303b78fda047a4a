//! Login throttling: a token bucket per key (a username, a client address). Each bucket holds
//! `burst` attempts and refills at `burst` per `window`; an empty bucket means 429 with the time
//! until the next attempt is allowed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Clone)]
pub(crate) struct Throttle {
    buckets: Cache<String, Arc<Mutex<Bucket>>>,
    burst: f64,
    /// Tokens added per second.
    rate: f64,
}

impl Throttle {
    /// `None` when `burst` is 0 (throttling off).
    pub(crate) fn new(burst: u32, window: Duration) -> Option<Throttle> {
        if burst == 0 {
            return None;
        }
        let rate = burst as f64 / window.as_secs_f64();
        Some(Throttle {
            // A bucket idle for a whole window is full again: forgetting it changes nothing.
            buckets: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(window)
                .build(),
            burst: burst as f64,
            rate,
        })
    }

    fn bucket(&self, key: &str) -> Arc<Mutex<Bucket>> {
        self.buckets.get_with_by_ref(key, || {
            Arc::new(Mutex::new(Bucket {
                tokens: self.burst,
                updated: Instant::now(),
            }))
        })
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
    }

    /// `Err(wait)` when `key` has no attempt left; takes nothing.
    pub(crate) fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// Takes one attempt from `key`'s bucket (it may go empty; never below zero).
    pub(crate) fn charge(&self, key: &str) {
        self.charge_at(key, Instant::now())
    }

    /// Takes one attempt from `key`'s bucket if it has one, in one step: of many requests that
    /// arrive together, only as many as the bucket holds get through. `Err(wait)` takes nothing.
    pub(crate) fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    /// Gives back an attempt `take` took, for an attempt that turned out not to count (a login
    /// that succeeded); never beyond the bucket's size.
    pub(crate) fn refund(&self, key: &str) {
        let bucket = self.bucket(key);
        let mut bucket = bucket.lock().expect("a bucket's lock is never poisoned");
        bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let bucket = self.bucket(key);
        let mut bucket = bucket.lock().expect("a bucket's lock is never poisoned");
        self.refill(&mut bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let bucket = self.bucket(key);
        let mut bucket = bucket.lock().expect("a bucket's lock is never poisoned");
        self.refill(&mut bucket, now);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    fn charge_at(&self, key: &str, now: Instant) {
        let bucket = self.bucket(key);
        let mut bucket = bucket.lock().expect("a bucket's lock is never poisoned");
        self.refill(&mut bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refills_at_its_rate() {
        let t = Throttle::new(3, Duration::from_secs(60)).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.check_at("k", start).is_ok());
            t.charge_at("k", start);
        }
        let wait = t.check_at("k", start).unwrap_err();
        assert_eq!(wait.as_secs(), 20, "one attempt per 20 s");
        assert!(t.check_at("other", start).is_ok(), "keys are separate");
        assert!(t.check_at("k", start + Duration::from_secs(19)).is_err());
        assert!(t.check_at("k", start + Duration::from_secs(20)).is_ok());
    }

    /// Taken in one step: however many ask at once, no more than the bucket holds get through;
    /// and what is given back makes room again, up to the bucket's size.
    #[test]
    fn take_hands_out_no_more_than_the_bucket_holds_and_refund_gives_back() {
        let t = Throttle::new(3, Duration::from_secs(60)).unwrap();
        let start = Instant::now();
        let taken = std::thread::scope(|scope| {
            let takers: Vec<_> = (0..16)
                .map(|_| scope.spawn(|| t.take_at("k", start).is_ok()))
                .collect();
            takers
                .into_iter()
                .map(|taker| taker.join().unwrap())
                .filter(|&ok| ok)
                .count()
        });
        assert_eq!(taken, 3);
        t.refund("k");
        assert!(t.take_at("k", start).is_ok());
        assert!(t.take_at("k", start).is_err());
        for _ in 0..10 {
            t.refund("other");
        }
        for _ in 0..3 {
            assert!(t.take_at("other", start).is_ok());
        }
        assert!(
            t.take_at("other", start).is_err(),
            "never beyond the bucket's size"
        );
    }

    #[test]
    fn zero_turns_it_off() {
        assert!(Throttle::new(0, Duration::from_secs(60)).is_none());
    }
}

//! Throttles repeated failed log-ins per account email and per client address.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait if any of `keys` is throttled now.
    pub fn blocked_for(&self, keys: &[String]) -> Option<u64> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(k))
            .filter(|(count, since)| {
                *count >= self.max_failures && now.duration_since(*since) < self.window
            })
            .map(|(_, since)| (self.window - now.duration_since(*since)).as_secs().max(1))
            .max()
    }

    pub fn record_failure(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the map from growing without bound under a spray of addresses.
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| now.duration_since(*since) < window);
        }
        for key in keys {
            let entry = map.entry(key.clone()).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
            // The window restarts from the failure that trips the limit.
            if entry.0 == self.max_failures {
                entry.1 = now;
            }
        }
    }

    pub fn record_success(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            map.remove(key);
        }
    }
}

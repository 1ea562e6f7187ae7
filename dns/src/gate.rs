//! Who may have a query relayed upstream, and how often: recursion is for the cluster's own
//! tasks (a source address inside one of its overlays), each source address at most `rate`
//! queries a second after a burst of `burst` (a token bucket per address). Names the cluster
//! answers itself are not limited. The buckets are bounded: past `max_clients`, the longest idle
//! are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Why a query is not relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The source is not a task of the cluster.
    NotATask,
    /// The source asked more than its rate.
    RateLimited,
}

#[derive(Debug)]
pub(crate) struct RecursionGate {
    rate: f64,
    burst: f64,
    max_clients: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RecursionGate {
    pub(crate) fn new(rate: u32, burst: u32, max_clients: usize) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            max_clients: max_clients.max(1),
            buckets: HashMap::new(),
        }
    }

    /// May `client` (`is_task`: its address is inside the cluster's overlays) have one more
    /// query relayed at `now`?
    pub(crate) fn admit(
        &mut self,
        client: IpAddr,
        is_task: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !is_task {
            return Err(Refusal::NotATask);
        }
        if !self.buckets.contains_key(&client) && self.buckets.len() >= self.max_clients {
            self.forget_idlest();
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let idle = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + idle * rate).min(burst);
        b.at = now;
        if b.tokens < 1.0 {
            return Err(Refusal::RateLimited);
        }
        b.tokens -= 1.0;
        Ok(())
    }

    fn forget_idlest(&mut self) {
        if let Some(idlest) = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.at)
            .map(|(a, _)| *a)
        {
            self.buckets.remove(&idlest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tasks_get_a_burst_then_their_rate_and_others_nothing() {
        let t0 = Instant::now();
        let task: IpAddr = "10.0.9.5".parse().unwrap();
        let other: IpAddr = "10.0.9.6".parse().unwrap();
        let mut g = RecursionGate::new(10, 3, 100);
        assert_eq!(
            g.admit("198.18.0.9".parse().unwrap(), false, t0),
            Err(Refusal::NotATask)
        );
        for _ in 0..3 {
            assert_eq!(g.admit(task, true, t0), Ok(()));
        }
        assert_eq!(g.admit(task, true, t0), Err(Refusal::RateLimited));
        // Another task has its own bucket.
        assert_eq!(g.admit(other, true, t0), Ok(()));
        // 10 a second: one more after 100 ms, never more than the burst after a long pause.
        assert_eq!(g.admit(task, true, t0 + Duration::from_millis(100)), Ok(()));
        assert_eq!(
            g.admit(task, true, t0 + Duration::from_millis(100)),
            Err(Refusal::RateLimited)
        );
        let later = t0 + Duration::from_mins(1);
        for _ in 0..3 {
            assert_eq!(g.admit(task, true, later), Ok(()));
        }
        assert_eq!(g.admit(task, true, later), Err(Refusal::RateLimited));
    }

    #[test]
    fn the_buckets_are_bounded_and_the_idlest_go_first() {
        let t0 = Instant::now();
        let mut g = RecursionGate::new(1, 1, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(g.admit(a, true, t0), Ok(()));
        assert_eq!(g.admit(b, true, t0 + Duration::from_millis(1)), Ok(()));
        assert_eq!(g.admit(c, true, t0 + Duration::from_millis(2)), Ok(()));
        assert_eq!(g.buckets.len(), 2);
        assert!(!g.buckets.contains_key(&a), "the idlest was forgotten");
    }
}

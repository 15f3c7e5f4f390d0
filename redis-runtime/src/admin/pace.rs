//! The rate limit of a run (`--max-ops-per-sec`): the command waits between
//! batches so that, on average, it sends no more Redis commands per second
//! than allowed, and never more than a tenth of a second's worth ahead.

use std::num::NonZeroU64;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The default of `--max-ops-per-sec`: gentle enough for a live primary
/// (a Redis instance serves 100,000+ simple commands per second), fast
/// enough to verify a million entities in under half an hour.
pub(super) const DEFAULT_MAX_OPS_PER_SEC: u64 = 5000;

/// How far ahead of the pace a run may get before it waits: small, so
/// that even the first second stays near the limit.
const BURST: Duration = Duration::from_millis(100);

/// Paces a run and counts what it sent.
#[derive(Debug)]
pub(super) struct Pacer {
    limit: Option<NonZeroU64>,
    started: Instant,
    /// When the commands sent so far are paid for (GCRA's theoretical
    /// arrival time).
    paid_until: Instant,
    ops: u64,
}

impl Pacer {
    /// A pacer allowing `max_ops_per_sec` commands per second; 0 is
    /// unlimited.
    pub(super) fn new(max_ops_per_sec: u64) -> Self {
        let now = Instant::now();
        Self {
            limit: NonZeroU64::new(max_ops_per_sec),
            started: now,
            paid_until: now,
            ops: 0,
        }
    }

    /// The limit, `None` when unlimited.
    pub(super) fn limit(&self) -> Option<u64> {
        self.limit.map(NonZeroU64::get)
    }

    /// Commands sent so far.
    #[cfg(test)]
    pub(super) fn ops(&self) -> u64 {
        self.ops
    }

    /// Time since the run started.
    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Average commands per second so far.
    pub(super) fn rate(&self) -> f64 {
        let secs = self.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// Counts `ops` commands just sent and returns when the limit allows
    /// more: `None` when that is now.
    pub(super) fn charge(&mut self, ops: u64) -> Option<Instant> {
        self.ops += ops;
        let limit = self.limit?;
        let now = Instant::now();
        // Time not used while idle is credited only up to the burst.
        let base = self.paid_until.max(now.checked_sub(BURST).unwrap_or(now));
        self.paid_until = base + Duration::from_secs_f64(ops as f64 / limit.get() as f64);
        let wake = self
            .paid_until
            .checked_sub(BURST)
            .unwrap_or(self.paid_until);
        (wake > now).then_some(wake)
    }

    /// [`Pacer::charge`], then waits until the limit allows more, or until
    /// `stop` is cancelled (Ctrl-C does not wait for the pace).
    #[cfg(test)]
    pub(super) async fn spend(&mut self, ops: u64, stop: &CancellationToken) {
        wait(self.charge(ops), stop).await;
    }

    /// The run's figures for its summary line: commands, seconds, rate and
    /// limit.
    pub(super) fn summary(&self) -> String {
        let limit = match self.limit {
            Some(limit) => format!("limit {limit}/s"),
            None => "no limit".to_owned(),
        };
        format!(
            "{} Redis commands in {:.1}s ({:.0}/s; {limit}, --max-ops-per-sec)",
            self.ops,
            self.elapsed().as_secs_f64(),
            self.rate()
        )
    }

    /// The same as JSON.
    pub(super) fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ops": self.ops,
            "seconds": (self.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "ops_per_sec": self.rate().round() as u64,
            "max_ops_per_sec": self.limit(),
        })
    }
}

/// Waits until `wake` (if any), or until `stop` is cancelled.
pub(super) async fn wait(wake: Option<Instant>, stop: &CancellationToken) {
    if let Some(wake) = wake {
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = stop.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_average_rate_stays_under_the_limit() {
        let stop = CancellationToken::new();
        let mut pacer = Pacer::new(1000);
        let start = tokio::time::Instant::now();
        // 10 batches of 500 at 1000/s: 5 s of commands, the last 0.1 s of
        // them not waited for.
        for _ in 0..10 {
            pacer.spend(500, &stop).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4850), "{took:?}");
        assert!(took <= Duration::from_millis(4950), "{took:?}");
        assert_eq!(pacer.ops(), 5000);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits_and_a_stop_cuts_a_wait_short() {
        let stop = CancellationToken::new();
        let mut unlimited = Pacer::new(0);
        let start = tokio::time::Instant::now();
        unlimited.spend(1_000_000, &stop).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(unlimited.limit(), None);

        let mut slow = Pacer::new(1);
        stop.cancel();
        slow.spend(1000, &stop).await;
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}

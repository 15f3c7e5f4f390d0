//! What every command that talks to Redis shares: the client, the rate
//! limit, the progress display and Ctrl-C.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

use super::pace::{self, Pacer};
use super::progress::{Progress, Update};
use crate::Client;
use crate::index::pass::Flow;

/// One online command's run.
pub(super) struct Session {
    /// The connection.
    pub(super) client: Client,
    /// The command's name, for the resume hint (e.g. `keyspace`).
    pub(super) program: &'static str,
    /// Keys per `SCAN` step (`--scan-count`).
    pub(super) scan_count: usize,
    /// Cancelled by Ctrl-C.
    pub(super) stop: CancellationToken,
    pacer: Mutex<Pacer>,
    progress: Mutex<Progress>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere does not make the counts unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// A session on `client`, paced at `max_ops_per_sec` (0: unlimited).
    pub(super) fn new(
        client: Client,
        program: &'static str,
        max_ops_per_sec: u64,
        scan_count: usize,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            program,
            scan_count,
            stop,
            pacer: Mutex::new(Pacer::new(max_ops_per_sec)),
            progress: Mutex::new(Progress::new()),
        }
    }

    /// Counts `ops` commands just sent, waits as the rate limit requires,
    /// and says whether to go on (not after Ctrl-C).
    pub(super) async fn pace(&self, ops: u64) -> Flow {
        let wake = lock(&self.pacer).charge(ops);
        pace::wait(wake, &self.stop).await;
        if self.stop.is_cancelled() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Commands per second so far.
    pub(super) fn rate(&self) -> f64 {
        lock(&self.pacer).rate()
    }

    /// Shows progress.
    pub(super) fn show(&self, update: &Update<'_>) {
        lock(&self.progress).update(update);
    }

    /// Clears the progress display, before the report.
    pub(super) fn finish(&self) {
        lock(&self.progress).finish();
    }

    /// The run's figures, as a line.
    pub(super) fn summary(&self) -> String {
        lock(&self.pacer).summary()
    }

    /// The run's figures, as JSON.
    pub(super) fn summary_json(&self) -> serde_json::Value {
        lock(&self.pacer).summary_json()
    }
}

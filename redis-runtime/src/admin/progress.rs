//! Progress on stderr while a run walks the keyspace: a bar with the
//! commands per second and an ETA when stderr is a terminal, otherwise a
//! plain `progress:` line on the first batch and then every 2 seconds
//! (for logs, and for whoever waits on the command's output).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use super::output::warn;

/// How often a plain progress line is printed.
const EVERY: Duration = Duration::from_secs(2);

/// Positions of the bar: the phase's share done, in thousandths.
const SCALE: u64 = 1000;

/// What one update says.
pub(super) struct Update<'a> {
    /// The subcommand, e.g. `repair`.
    pub(super) command: &'a str,
    /// The entity type.
    pub(super) entity: &'a str,
    /// The phase, e.g. `entities` or `index by_status`.
    pub(super) phase: &'a str,
    /// The phase's share done (0.0 to 1.0, an estimate).
    pub(super) fraction: f64,
    /// A short count of what was done, e.g. `1500 entities, 0 drift`.
    pub(super) counts: &'a str,
    /// Redis commands per second so far.
    pub(super) rate: f64,
    /// The `SCAN` cursor the phase continues with.
    pub(super) cursor: u64,
}

/// The progress display of one run.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    /// The phase shown, when this run started showing it and its share
    /// done then (for the plain ETA; a resumed phase starts part done).
    phase: Option<(String, Instant, f64)>,
    /// When the last plain line was printed.
    printed: Option<Instant>,
}

impl Progress {
    /// A bar if stderr is a terminal, plain lines otherwise.
    pub(super) fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template("{msg} [{bar:30}] {percent:>3}% ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            ProgressBar::new(SCALE).with_style(style)
        });
        Self {
            bar,
            phase: None,
            printed: None,
        }
    }

    /// Shows `update`.
    pub(super) fn update(&mut self, update: &Update<'_>) {
        let now = Instant::now();
        let name = format!("{} {}: {}", update.command, update.entity, update.phase);
        let fraction = update.fraction.clamp(0.0, 1.0);
        let new_phase = self.phase.as_ref().is_none_or(|(shown, ..)| *shown != name);
        if new_phase {
            self.phase = Some((name.clone(), now, fraction));
            if let Some(bar) = &self.bar {
                bar.set_position(0);
                bar.reset_eta();
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{name} ({}, {:.0} cmd/s)",
                update.counts, update.rate
            ));
            bar.set_position((fraction * SCALE as f64) as u64);
            return;
        }
        if self.printed.is_some_and(|at| now - at < EVERY) {
            return;
        }
        self.printed = Some(now);
        let eta = self
            .phase
            .as_ref()
            .filter(|(_, _, from)| fraction - from > 0.01 && fraction < 1.0)
            .map(|(_, since, from)| (now - *since).mul_f64((1.0 - fraction) / (fraction - from)))
            .map(|eta| format!(", ETA {}s", eta.as_secs()))
            .unwrap_or_default();
        warn(format_args!(
            "progress: {name} {:.0}% ({}, {:.0} cmd/s{eta}) cursor {}",
            fraction * 100.0,
            update.counts,
            update.rate,
            update.cursor
        ));
    }

    /// Removes the bar before the report is printed.
    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

//! Ctrl-C: the first one asks the run to stop after its current batch (it
//! then prints where it stopped and exits [`EXIT_INTERRUPTED`]); a second
//! one quits at once.

use tokio_util::sync::CancellationToken;

use super::output::warn;

/// The exit code of a run stopped by Ctrl-C: 128 + SIGINT, as shells
/// report a process ended by it.
pub(super) const EXIT_INTERRUPTED: u8 = 130;

/// Starts watching for Ctrl-C; the token is cancelled on the first one.
///
/// The handler is installed before this returns (not on the watcher's
/// first poll), so a Ctrl-C after it can never kill the process mid-batch.
/// Must be called within the Tokio runtime.
pub(super) fn watch() -> std::io::Result<CancellationToken> {
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupts = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            if interrupts.recv().await.is_some() {
                warn("interrupted: stopping after the current batch (Ctrl-C again quits now)");
                cancel.cancel();
            }
            if interrupts.recv().await.is_some() {
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            warn("interrupted: stopping after the current batch (Ctrl-C again quits now)");
            cancel.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
    Ok(stop)
}

//! SIGINT and SIGTERM: the first asks for a clean stop (the caller drains
//! what is in flight); a second exits at once with status 130, and so does
//! the end of `shutdown.drain_timeout` with status 3. Either way what was not
//! finished is redone: leases and unacknowledged messages come back. SIGHUP
//! reads the ASN database again.

use std::time::Duration;

use tdmon_worker::Checker;
use tdmon_worker::attribute::Reload;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::Exit;

/// Reads `checker`'s ASN database file again on every SIGHUP, for the life
/// of the process (the checks in flight go on). What the reload did is
/// logged by the attributor; a failed one keeps the database in use.
pub(crate) fn reload_asn_db_on_hangup(checker: Checker) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; the ASN database is reloaded only when its file is replaced");
            return;
        }
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if let Reload::NoDatabase = checker.reload_asn_db().await {
                tracing::info!("SIGHUP: no ASN database is configured, nothing to reload");
            }
        }
    });
}

/// Status of a process stopped by a second signal.
const INTERRUPTED: i32 = 130;

/// Cancels `shutdown` on the first signal, saying what the stop waits for;
/// exits the process on the second, or when draining takes longer than
/// `drain_timeout`.
pub(crate) async fn stop_on_signal(
    shutdown: CancellationToken,
    draining: &'static str,
    drain_timeout: Duration,
) {
    // Listening from the start to the end: a second signal that comes right
    // after the first is not missed between two listeners.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGINT and SIGTERM");
            return;
        }
    };
    signals.next().await;
    eprintln!("\ntdmon: stopping: {draining} (again to exit at once)");
    tracing::info!(
        drain_timeout = %tdmon_core::duration::format(drain_timeout),
        "stopping: no new work taken, draining what is in flight"
    );
    shutdown.cancel();
    tokio::select! {
        () = signals.next() => {
            eprintln!("tdmon: exiting at once; unfinished work will be redone");
            std::process::exit(INTERRUPTED);
        }
        () = tokio::time::sleep(drain_timeout) => {
            eprintln!(
                "tdmon: draining took longer than shutdown.drain_timeout ({}); exiting, \
                 unfinished work will be redone",
                tdmon_core::duration::format(drain_timeout)
            );
            std::process::exit(Exit::Failure as i32);
        }
    }
}

/// SIGINT and SIGTERM, each listened for once for the process's life.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

//! SIGINT and SIGTERM: the first asks for a clean stop (the caller drains
//! what is in flight), a second exits at once with status 130. SIGHUP reads
//! the ASN database again.

use tdmon_worker::Checker;
use tdmon_worker::attribute::Reload;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on the first signal, saying what the stop waits for;
/// exits the process on the second.
pub(crate) async fn stop_on_signal(shutdown: CancellationToken, draining: &'static str) {
    wait_for_signal().await;
    eprintln!("\ntdmon: stopping: {draining} (again to exit at once)");
    shutdown.cancel();
    wait_for_signal().await;
    eprintln!("tdmon: exiting at once; unfinished work will be redone");
    std::process::exit(130);
}

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

async fn wait_for_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

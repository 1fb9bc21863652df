//! SIGINT and SIGTERM: the first asks for a clean stop (the caller drains
//! what is in flight), a second exits at once with status 130.

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

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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

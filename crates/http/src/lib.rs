//! tdmon's HTTP server, the same on every role:
//!
//! - `GET /healthz`: the process is alive (always 200 while it serves);
//! - `GET /readyz`: every dependency answers (the store, the broker), 503
//!   naming the one that does not, and 503 once the process is stopping;
//! - `GET /metrics`: the Prometheus metrics of the process (`tdmon-metrics`);
//! - on the dispatcher and the embedded monitor, the API ([`api`]):
//!   `POST /notices` and `GET /urls/{id}`, behind a bearer token.
//!
//! The routes are listed once, in [`routes`]: the server is built from that
//! list, and a test checks docs/openapi.json against it.

pub mod api;
mod auth;
mod settings;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use chrono::Utc;
use tdmon_store::Store;
use tokio_util::sync::CancellationToken;

pub use crate::api::Api;
pub use crate::settings::{ConfigError, HttpConfig, HttpSettings};

/// How long a readiness probe may take before its dependency counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A readiness check: `Err` says why the dependency is not usable.
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A probe of `store`: one indexed read (of a URL id that never exists), a
/// round trip that costs the same at any size, unlike `status`.
pub fn store_probe(store: Store) -> Probe {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            store
                .states(&[0])
                .await
                .map(|_| ())
                .map_err(|e| tdmon_core::error_chain(&e))
        })
    })
}

/// What one process serves.
#[derive(Clone)]
pub struct Parts {
    /// Named readiness probes, e.g. `("store", ...)`, `("broker", ...)`.
    pub probes: Vec<(&'static str, Probe)>,
    /// The API, on the roles that take notices.
    pub api: Option<Api>,
    /// A store whose URLs per phase `/metrics` reports; one process per
    /// deployment should (the dispatcher, or the embedded monitor).
    pub phases_from: Option<Store>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let probes: Vec<_> = self.probes.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Parts")
            .field("probes", &probes)
            .field("api", &self.api.is_some())
            .finish()
    }
}

#[derive(Clone)]
struct Shared {
    parts: Parts,
    stopping: CancellationToken,
}

/// Every route: path (as in OpenAPI), method, handler.
pub fn routes() -> Vec<(&'static str, Method)> {
    handlers()
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect()
}

type Handler = MethodRouter<Shared>;

fn handlers() -> Vec<(&'static str, Method, Handler)> {
    vec![
        ("/healthz", Method::GET, get(healthz)),
        ("/readyz", Method::GET, get(readyz)),
        ("/metrics", Method::GET, get(metrics)),
        ("/notices", Method::POST, post(api::post_notices)),
        ("/urls/{id}", Method::GET, get(api::get_url)),
        ("/hosters", Method::GET, get(api::get_hosters)),
    ]
}

fn router(parts: Parts, stopping: CancellationToken, max_body: usize) -> Router {
    let mut router = Router::new();
    for (path, _, handler) in handlers() {
        router = router.route(path, handler);
    }
    router
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Shared { parts, stopping })
}

/// A server that is running.
#[derive(Debug)]
pub struct Serving {
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Waits for the server to finish the requests it has after `stop`.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Binds `settings.listen` and serves `parts` until `stop` is cancelled
/// (requests in flight then finish; readiness says 503 from the start of the
/// stop). `None` when no address is configured. A bind failure is returned:
/// the process should not start without the server it was asked for.
pub async fn serve(
    settings: &HttpSettings,
    mut parts: Parts,
    stop: CancellationToken,
) -> std::io::Result<Option<Serving>> {
    let Some(listen) = settings.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot serve HTTP on {listen}: {e}"))
    })?;
    let address = listener.local_addr()?;
    if let Some(api) = &mut parts.api {
        api.token = settings.token.clone().map(auth::Token::new);
    }
    let app = router(parts, stop.clone(), settings.max_body_bytes);
    tracing::info!(%address, "serving HTTP");
    let task = tokio::spawn(async move {
        let stopped = stop.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the HTTP server failed");
        }
    });
    Ok(Some(Serving { address, task }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Shared>) -> Response {
    if shared.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response();
    }
    let mut report = String::new();
    let mut ready = true;
    for (name, probe) in &shared.parts.probes {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, probe())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")));
        match outcome {
            Ok(()) => report.push_str(&format!("{name}: ok\n")),
            Err(reason) => {
                ready = false;
                report.push_str(&format!("{name}: {reason}\n"));
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, report).into_response()
}

async fn metrics(State(shared): State<Shared>) -> Response {
    if let Some(store) = &shared.parts.phases_from
        && let Ok(Ok(status)) = tokio::time::timeout(PROBE_TIMEOUT, store.status(Utc::now())).await
    {
        let urls = &tdmon_metrics::metrics().urls;
        // A phase no URL is in any more reads 0, not its last count.
        urls.clear();
        for (phase, count) in status.by_phase {
            let label = tdmon_metrics::PhaseLabel {
                phase: phase.as_str(),
            };
            urls.get_or_create(&label)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        tdmon_metrics::encode(),
    )
        .into_response()
}

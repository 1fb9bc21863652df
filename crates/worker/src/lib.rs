//! tdmon's worker: the check pipeline as a library. A [`Checker`] checks one
//! [`CheckJob`] and returns one [`Observation`]: it resolves the host once,
//! keeps only addresses the target policy admits, waits for its limits,
//! fetches the headers from an address of that same answer (following only
//! redirects that keep the resource), attributes the address actually used
//! and classifies the outcome.
//!
//! The total timeout is charged only for the check's time on the network (its
//! lookups and requests). Waits for tdmon's own limits are bounded by the
//! job's expiry instead: a check that waited past it is `not_checked`, never a
//! `timeout`, and a check that got its turn has its whole timeout left.
//!
//! A dead URL is a value here: `check` never fails. `Err` is for building the
//! checker (configuration, ASN database, TLS roots).
//!
//! Modules, in the order a check uses them: [`resolve`], [`policy`],
//! [`limits`], [`fetch`], [`attribute`], [`classify`]; [`config`] holds the
//! `[worker]` table.

pub mod attribute;
pub mod classify;
pub mod config;
pub mod fetch;
pub mod limits;
pub mod policy;
pub mod resolve;
mod run;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tdmon_core::message::{DnsOutcome, DnsResult, HttpResult, RedirectHop, SchemaV1};
use tdmon_core::{CheckJob, Observation, Outcome, VerdictMap};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;
use url::{Host, Url};

use crate::attribute::{AsnDbError, Attributor, Reload};
use crate::classify::{RedirectJudgement, classify_final, fingerprint, judge_redirect};
pub use crate::config::{ConfigError, WorkerConfig, WorkerSettings};
use crate::fetch::{ClientError, Fetcher};
use crate::limits::{Limits, NotAdmitted, parse_retry_after};
use crate::policy::TargetPolicy;
use crate::resolve::{Admitted, Resolver, ResolverError};
pub use crate::run::run;

/// The checker could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("the checker must be built inside a Tokio runtime")]
    NoRuntime,
    #[error(transparent)]
    Resolver(#[from] ResolverError),
    #[error(transparent)]
    AsnDb(#[from] AsnDbError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Checks jobs. Cheap to clone: clones share the resolver cache, the HTTP
/// clients, the ASN database and the limits. The background task that evicts
/// idle per-address state stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Checker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: WorkerSettings,
    verdicts: VerdictMap,
    resolver: Resolver,
    policy: TargetPolicy,
    fetcher: Fetcher,
    attributor: Arc<Attributor>,
    limits: Arc<Limits>,
    _evictor: DropGuard,
}

/// What a check saw so far; becomes the observation.
#[derive(Debug)]
struct Trace {
    dns: DnsResult,
    /// The address a response came from.
    ip: Option<IpAddr>,
    /// The address the check chose to contact (the first admitted one).
    chosen: Option<IpAddr>,
    http: Option<HttpResult>,
    redirects: Vec<RedirectHop>,
    tls_error: Option<String>,
    fingerprint: Option<String>,
}

impl Checker {
    /// Builds a checker: the resolver, the HTTP clients, the ASN database
    /// (read once, into memory) and the limits. Must be called inside a Tokio
    /// runtime: it starts the task that evicts idle per-address state.
    pub fn new(settings: WorkerSettings, verdicts: VerdictMap) -> Result<Checker, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let resolver = Resolver::new(&settings.resolver)?;
        let policy = TargetPolicy::new(settings.allow.clone());
        let fetcher = Fetcher::new(&settings)?;
        let attributor = Arc::new(Attributor::from_settings(&settings)?);
        let limits = Arc::new(Limits::new(&settings.limits));

        // Housekeeping beside the checks: evicting idle per-address state,
        // and reading the ASN database again when its file is replaced.
        let stop = CancellationToken::new();
        let evicting = limits.clone();
        let idle = fetcher.clone();
        let watched = attributor.clone();
        let stopped = stop.clone();
        let every = settings.limits.evict_interval;
        let look = settings.attribution.watch_interval;
        runtime.spawn(async move {
            let mut evict = tokio::time::interval_at(Instant::now() + every, every);
            evict.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut watch = tokio::time::interval_at(Instant::now() + look, look);
            watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Idle connections go within a second of their idle time.
            let mut sweep = tokio::time::interval(Duration::from_secs(1));
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    _ = evict.tick() => evicting.evict(),
                    _ = sweep.tick(), if idle.reuses() => idle.evict(),
                    _ = watch.tick() => {
                        let watched = watched.clone();
                        let _ = tokio::task::spawn_blocking(move || watched.reload(false)).await;
                    }
                }
            }
        });

        Ok(Checker {
            inner: Arc::new(Inner {
                settings,
                verdicts,
                resolver,
                policy,
                fetcher,
                attributor,
                limits,
                _evictor: stop.drop_guard(),
            }),
        })
    }

    /// The settings this checker was built from.
    pub fn settings(&self) -> &WorkerSettings {
        &self.inner.settings
    }

    /// The attributor, whose counters (records that did not decode) a
    /// status line or metrics can show.
    pub fn attributor(&self) -> &Attributor {
        &self.inner.attributor
    }

    /// Reads the ASN database file again now, changed or not (SIGHUP); the
    /// checks in flight go on, and those that start after it use the new one.
    pub async fn reload_asn_db(&self) -> Reload {
        let attributor = self.inner.attributor.clone();
        tokio::task::spawn_blocking(move || attributor.reload(true))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Checks one job without a baseline fingerprint.
    pub async fn check(&self, job: &CheckJob) -> Observation {
        self.check_against(job, None).await
    }

    /// Checks one job; `baseline` is the fingerprint of the URL's first online
    /// check, against which a 2xx is judged (`content_replaced` when a file
    /// now answers as an HTML page).
    pub async fn check_against(&self, job: &CheckJob, baseline: Option<&str>) -> Observation {
        let span = tracing::debug_span!("check", job_id = %job.job_id, url = %job.url);
        self.observe(job, baseline).instrument(span).await
    }

    async fn observe(&self, job: &CheckJob, baseline: Option<&str>) -> Observation {
        let inner = &self.inner;
        let mut started_at = Utc::now();
        let mut start = Instant::now();
        let expiry = start + (job.expires_at - started_at).to_std().unwrap_or_default();
        let mut trace = Trace {
            dns: DnsResult {
                outcome: DnsOutcome::Ok,
                answers: Vec::new(),
            },
            ip: None,
            chosen: None,
            http: None,
            redirects: Vec::new(),
            tls_error: None,
            fingerprint: None,
        };

        let admitted = if job.expires_at <= started_at {
            Err(NotAdmitted::Expired)
        } else {
            let waiting = Instant::now();
            let admitted = inner.limits.start_check(expiry).await;
            observe_wait("check", waiting);
            admitted
        };
        let outcome = match admitted {
            Err(not_admitted) => not_admitted_outcome(not_admitted),
            Ok(_permit) => {
                // The check starts when it may contact the network, before
                // its first lookup: every answer it records, and every wait
                // for an address's turn, comes after.
                started_at = Utc::now();
                start = Instant::now();
                self.run(job, baseline, expiry, &mut trace).await
            }
        };
        if let Some(http) = &mut trace.http {
            http.redirects = trace.redirects;
        }

        // The address actually used; without a connection, the one chosen, or
        // the first answer.
        let attributed = trace
            .ip
            .or(trace.chosen)
            .or_else(|| trace.dns.answers.first().copied());
        // When the check had its answer (or gave up), on the same clock as its
        // start: every bracket ends at an answer.
        let took = start.elapsed();
        let answered_at =
            started_at + chrono::TimeDelta::from_std(took).unwrap_or(chrono::TimeDelta::MAX);
        let attribution = attributed.map(|ip| inner.attributor.attribute(ip));
        let verdict = inner.verdicts.verdict(outcome);
        tracing::debug!(%outcome, %verdict, "checked");
        let metrics = tdmon_metrics::metrics();
        metrics
            .checks
            .get_or_create(&tdmon_metrics::CheckLabels {
                verdict: verdict.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
        metrics
            .check_duration
            .get_or_create(&tdmon_metrics::VerdictLabel {
                verdict: verdict.as_str(),
            })
            .observe(took.as_secs_f64());
        if attributed.is_some()
            && attribution
                .as_ref()
                .is_none_or(|a| a.asn.is_none() && a.hoster.is_none())
        {
            metrics.unattributed.inc();
        }
        Observation {
            schema: SchemaV1,
            job_id: job.job_id,
            url_id: job.url_id,
            url: job.url.clone(),
            worker: inner.settings.name.clone(),
            started_at,
            answered_at,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            dns: trace.dns,
            ip: trace.ip,
            asn: attribution.as_ref().and_then(|a| a.asn),
            as_org: attribution.as_ref().and_then(|a| a.as_org.clone()),
            hoster: attribution.as_ref().and_then(|a| a.hoster.clone()),
            cdn: attribution.as_ref().is_some_and(|a| a.cdn),
            http: trace.http,
            tls_error: trace.tls_error,
            fingerprint: trace.fingerprint,
            outcome,
            verdict,
        }
    }

    async fn run(
        &self,
        job: &CheckJob,
        baseline: Option<&str>,
        expiry: Instant,
        trace: &mut Trace,
    ) -> Outcome {
        let inner = &self.inner;
        let mut network = NetworkTime::new(inner.settings.total_timeout);
        let mut url = match Url::parse(job.url.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
            _ => {
                tracing::warn!(job_id = %job.job_id, url = %job.url, "not an http(s) URL");
                return Outcome::HttpUnexpected;
            }
        };
        // Each host is looked up once per check, however many hops go to it.
        let mut answers: Vec<(String, Vec<IpAddr>)> = Vec::new();
        loop {
            // Each hop is policy-checked on its own: the observation's `dns`
            // describes the last host tried.
            trace.dns = DnsResult {
                outcome: DnsOutcome::Ok,
                answers: Vec::new(),
            };
            trace.chosen = None;
            let answer = match url.host() {
                Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
                Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
                Some(Host::Domain(name)) => match answers.iter().find(|(host, _)| host == name) {
                    Some((_, answer)) => answer.clone(),
                    None => {
                        let lookup = network
                            .spend(|deadline| {
                                tokio::time::timeout_at(deadline, inner.resolver.lookup(name))
                            })
                            .await;
                        match lookup.unwrap_or(Err(DnsOutcome::Timeout)) {
                            Ok(answer) => {
                                answers.push((name.to_owned(), answer.clone()));
                                answer
                            }
                            Err(dns) => {
                                trace.dns.outcome = dns;
                                return fetch::dns_failure_outcome(dns);
                            }
                        }
                    }
                },
                None => return Outcome::HttpUnexpected,
            };
            trace.dns.answers = answer;
            let host = url.host_str().unwrap_or_default();
            let Some(admitted) = Admitted::new(host, &trace.dns.answers, &inner.policy) else {
                trace.dns.outcome = DnsOutcome::RefusedByPolicy;
                if let Some(Err(refused)) =
                    trace.dns.answers.first().map(|&ip| inner.policy.check(ip))
                {
                    tracing::info!(url = %url, %refused, "not contacted");
                }
                return Outcome::RefusedByPolicy;
            };
            let ip = admitted.first();
            trace.chosen = Some(ip);

            // Waiting for our own limits is bounded by the job's expiry, not
            // charged to the network time.
            let waiting = Instant::now();
            let admitted_address = inner.limits.admit(ip, expiry).await;
            observe_wait("address", waiting);
            let _address = match admitted_address {
                Ok(permit) => permit,
                Err(not_admitted) => return not_admitted_outcome(not_admitted),
            };
            let fetched = network
                .spend(|deadline| inner.fetcher.get(&url, &admitted, deadline))
                .await;
            if fetched.tls_error.is_some() {
                trace.tls_error = fetched.tls_error;
            }
            let head = match fetched.result {
                Ok(head) => head,
                Err(failure) if failure.outcome == Outcome::RefusedByPolicy => {
                    // The client asked for a host this check admitted no
                    // address of: it was not let connect anywhere.
                    tracing::warn!(url = %url, error = %failure.detail, "connection refused: no admitted address");
                    return failure.outcome;
                }
                Err(failure) => {
                    tracing::debug!(url = %url, %ip, error = %failure.detail, outcome = %failure.outcome, "request failed");
                    return failure.outcome;
                }
            };
            let used = head.remote.map_or(ip, |remote| remote.ip());
            if used != ip {
                tracing::debug!(url = %url, chosen = %ip, %used, "connected to another admitted address");
            }
            trace.ip = Some(used);
            if matches!(head.status, 429 | 503)
                && let Some(wait) = head
                    .retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, Utc::now()))
            {
                inner.limits.back_off(used, wait);
            }
            let mut http = HttpResult {
                status: head.status,
                content_type: head.content_type.clone(),
                content_length: head.content_length,
                etag: head.etag.clone(),
                last_modified: head.last_modified.clone(),
                location: None,
                redirects: Vec::new(),
                connection_reused: head.reused,
            };

            if matches!(head.status, 301 | 302 | 303 | 307 | 308) {
                let target = head.location.as_deref().and_then(|loc| url.join(loc).ok());
                let Some(target) = target else {
                    http.location = head.location;
                    trace.http = Some(http);
                    return Outcome::HttpUnexpected;
                };
                http.location = Some(target.to_string());
                trace.http = Some(http);
                match judge_redirect(&url, &target) {
                    RedirectJudgement::Elsewhere => return Outcome::RedirectElsewhere,
                    RedirectJudgement::Follow => {
                        if trace.redirects.len() >= usize::from(inner.settings.max_redirects) {
                            return Outcome::TooManyRedirects;
                        }
                        trace.redirects.push(RedirectHop {
                            url: url.to_string(),
                            status: head.status,
                        });
                        url = target;
                        continue;
                    }
                }
            }

            let print = fingerprint(head.content_type.as_deref(), head.prefix.as_deref());
            let outcome = classify_final(head.status, &print, baseline);
            trace.fingerprint = Some(print);
            trace.http = Some(http);
            return outcome;
        }
    }
}

/// The check's total timeout, charged only for its time on the network.
#[derive(Debug)]
struct NetworkTime {
    left: Duration,
}

impl NetworkTime {
    fn new(total: Duration) -> Self {
        Self { left: total }
    }

    /// Runs one step on the network (a lookup or a request), which must end
    /// by the instant it is given, and charges the time it took.
    async fn spend<F: Future>(&mut self, step: impl FnOnce(Instant) -> F) -> F::Output {
        let started = Instant::now();
        let output = step(started + self.left).await;
        self.left = self.left.saturating_sub(started.elapsed());
        output
    }
}

/// A check that did not contact its host (the host's own `Retry-After`, or
/// our limits, would have held it past the job's expiry) is `not_checked`:
/// it must not count as an inconclusive check of the content.
fn not_admitted_outcome(_: NotAdmitted) -> Outcome {
    Outcome::NotChecked
}

/// Records how long a check waited for one of tdmon's own limits.
fn observe_wait(limit: &'static str, since: Instant) {
    tdmon_metrics::metrics()
        .limiter_wait
        .get_or_create(&tdmon_metrics::LimitLabel { limit })
        .observe(since.elapsed().as_secs_f64());
}

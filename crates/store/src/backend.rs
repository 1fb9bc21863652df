//! The store's operations, written once and expanded for each backend by
//! [`impl_store!`], so that both run the same logic over their own concrete
//! sqlx types (generic sqlx code needs a bound for every type bound or
//! decoded). The module that invokes the macro provides:
//!
//! - `Db`, `DbRow`: the sqlx database and row types;
//! - `DbTime`, `db_time(DateTime<Utc>) -> DbTime`,
//!   `from_db_time(&str, DbTime) -> Result<DateTime<Utc>, StoreError>`;
//! - `json_opt::<T>(&DbRow, column, what) -> Result<Option<T>, StoreError>`,
//!   which parses a nullable JSON column into `T` (a corrupt value names
//!   `what`);
//! - `BEGIN_WRITE`: the statement that starts a write transaction;
//! - `write_states(tx, states, now)`: writes the new state, phase, next check
//!   and baseline of each `(url_id, state)` and ends its lease;
//! - `LEASE_SQL` (binds: now, lease end, limit; returns url_id, url, host,
//!   next_purpose, next_check_at) and `LOCK_ROWS` (appended to the query
//!   that loads the states an observation batch changes);
//! - a store struct with `writer` and `reader` pools and a `url`.
//!
//! SQL uses `$N` placeholders, which both backends read.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tdmon_core::notice::{DuplicateKey, Notice};
use tdmon_core::state::Phase;

use crate::codec::micros;

/// The columns an observation is read from, in one place for every query
/// that reads observations ([`decode_observation`]).
macro_rules! observation_columns {
    () => {
        "job_id, url_id, url, worker, started_at, answered_at, duration_ms, dns_outcome, \
         dns_answers, ip, asn, as_org, hoster, cdn, http_status, content_type, \
         content_length, etag, last_modified, location, redirects, connection_reused, \
         tls_error, fingerprint, outcome, verdict"
    };
}

macro_rules! impl_store {
    ($store:ty) => {
        impl $store {
            pub(crate) async fn close(&self) {
                self.writer.close().await;
                self.reader.close().await;
            }

            pub(crate) async fn add_notices(
                &self,
                notices: &[Notice],
                now: DateTime<Utc>,
            ) -> Result<AddedNotices, StoreError> {
                let now = micros(now);
                let mut duplicates = Vec::new();
                let mut by_id: HashMap<&str, usize> = HashMap::new();
                let mut by_key: HashMap<(&str, DateTime<Utc>), usize> = HashMap::new();
                let mut fresh: Vec<Candidate<'_>> = Vec::new();
                for (index, notice) in notices.iter().enumerate() {
                    let candidate = Candidate {
                        index,
                        notice,
                        notified_at: micros(notice.notified_at),
                    };
                    if let Some(id) = notice.notice_id.as_deref()
                        && let Some(&first) = by_id.get(id)
                    {
                        let key = candidate.id_key().expect("has a notice_id");
                        duplicates.push((index, DuplicateReason::InInput { first, key }));
                        continue;
                    }
                    let url_key = (notice.url.as_str(), candidate.notified_at);
                    if let Some(&first) = by_key.get(&url_key) {
                        let key = candidate.url_key();
                        duplicates.push((index, DuplicateReason::InInput { first, key }));
                        continue;
                    }
                    if let Some(id) = notice.notice_id.as_deref() {
                        by_id.insert(id, index);
                    }
                    by_key.insert(url_key, index);
                    fresh.push(candidate);
                }

                let mut tx = self
                    .writer
                    .begin_with(BEGIN_WRITE)
                    .await
                    .map_err(StoreError::query("starting to add notices"))?;
                let stored = Self::stored_keys(&mut tx, &fresh).await?;
                let mut new = Vec::with_capacity(fresh.len());
                for candidate in fresh {
                    match stored.duplicate(&candidate) {
                        Some(key) => {
                            duplicates.push((candidate.index, DuplicateReason::Stored { key }))
                        }
                        None => new.push(candidate),
                    }
                }

                // Insert the notices; their row ids become the URL ids. A
                // conflict here is a notice stored concurrently by another
                // process since the check above. Inserting in URL order makes
                // concurrent calls take the unique index's locks in one order,
                // so that on PostgreSQL they wait for each other rather than
                // deadlock.
                new.sort_by(|a, b| a.url_and_time().cmp(&b.url_and_time()));
                let mut ids: HashMap<(String, DateTime<Utc>), UrlId> = HashMap::new();
                for chunk in chunks_for(&new, 8) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "INSERT INTO notices (notice_id, url, host, notified_at, category, \
                         reporter, claimed_hoster, added_at) ",
                    );
                    qb.push_values(chunk, |mut row, c| {
                        row.push_bind(c.notice.notice_id.as_deref())
                            .push_bind(c.notice.url.as_str())
                            .push_bind(c.notice.url.host())
                            .push_bind(db_time(c.notified_at))
                            .push_bind(c.notice.category.as_deref())
                            .push_bind(c.notice.reporter.as_deref())
                            .push_bind(c.notice.claimed_hoster.as_deref())
                            .push_bind(db_time(now));
                    });
                    qb.push(" ON CONFLICT DO NOTHING RETURNING id, url, notified_at");
                    let rows = qb
                        .build()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(StoreError::query("inserting notices"))?;
                    let read = || StoreError::query("reading new notice ids");
                    for row in rows {
                        let id: i64 = row.try_get("id").map_err(read())?;
                        let url: String = row.try_get("url").map_err(read())?;
                        let at: DbTime = row.try_get("notified_at").map_err(read())?;
                        ids.insert((url, from_db_time("notice time", at)?), id);
                    }
                }
                let (mut inserted, raced): (Vec<_>, Vec<Candidate<'_>>) = new
                    .into_iter()
                    .partition(|c| {
                        ids.contains_key(&(c.notice.url.as_str().to_owned(), c.notified_at))
                    });
                if !raced.is_empty() {
                    let stored = Self::stored_keys(&mut tx, &raced).await?;
                    for candidate in &raced {
                        let key = stored
                            .duplicate(candidate)
                            .unwrap_or_else(|| candidate.url_key());
                        duplicates.push((candidate.index, DuplicateReason::Stored { key }));
                    }
                }

                inserted.sort_by_key(|c| c.index);
                let mut added = Vec::with_capacity(inserted.len());
                let mut states = Vec::with_capacity(inserted.len());
                for candidate in &inserted {
                    let url = candidate.notice.url.as_str();
                    let url_id = ids[&(url.to_owned(), candidate.notified_at)];
                    let subject = Subject {
                        url_id,
                        url: url.to_owned(),
                        notice_id: candidate.notice.notice_id.clone(),
                        notified_at: candidate.notified_at,
                    };
                    added.push(url_id);
                    states.push((UrlState::new(subject, now), candidate.notice.url.host()));
                }
                for chunk in chunks_for(&states, 8) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "INSERT INTO urls (url_id, url, host, phase, next_check_at, next_purpose, \
                         state, updated_at) ",
                    );
                    qb.push_values(chunk, |mut row, (state, host)| {
                        row.push_bind(state.subject.url_id)
                            .push_bind(state.subject.url.as_str())
                            .push_bind(*host)
                            .push_bind(state.phase.as_str())
                            .push_bind(state.next_check.map(|n| db_time(n.at)))
                            .push_bind(state.next_check.map(|n| name_of(&n.purpose)))
                            .push_bind(Json(state))
                            .push_bind(db_time(now));
                    });
                    qb.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query("inserting monitored URLs"))?;
                }
                let mut counts = Counts::default();
                counts.add(phase_counter(Phase::Pending), states.len() as i64);
                Self::bump(&mut tx, &counts).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::query("committing new notices"))?;
                duplicates.sort_by_key(|(index, _)| *index);
                Ok(AddedNotices { added, duplicates })
            }

            /// Which of `candidates` repeat a stored notice's id or URL and time.
            async fn stored_keys(
                tx: &mut sqlx::Transaction<'static, Db>,
                candidates: &[Candidate<'_>],
            ) -> Result<StoredKeys, StoreError> {
                let mut stored = StoredKeys::default();
                let ids: Vec<&str> = candidates
                    .iter()
                    .filter_map(|c| c.notice.notice_id.as_deref())
                    .collect();
                let action = "looking up stored notice ids";
                let statement = "SELECT notice_id FROM notices WHERE notice_id IN (";
                for row in Self::fetch_listed(tx, statement, &ids, action).await? {
                    let id: String = row.try_get(0).map_err(StoreError::query(action))?;
                    stored.notice_ids.insert(id);
                }
                let urls: Vec<&str> = candidates.iter().map(|c| c.notice.url.as_str()).collect();
                let action = "looking up stored notice URLs";
                let statement = "SELECT url, notified_at FROM notices WHERE url IN (";
                for row in Self::fetch_listed(tx, statement, &urls, action).await? {
                    let url: String = row.try_get(0).map_err(StoreError::query(action))?;
                    let at: DbTime = row.try_get(1).map_err(StoreError::query(action))?;
                    stored.url_times.insert((url, from_db_time("notice time", at)?));
                }
                Ok(stored)
            }

            /// Runs `statement` (which ends in `IN (`) over `values`, chunked
            /// to the backend's bind limit, and returns every row.
            async fn fetch_listed(
                tx: &mut sqlx::Transaction<'static, Db>,
                statement: &str,
                values: &[&str],
                action: &'static str,
            ) -> Result<Vec<DbRow>, StoreError> {
                let mut rows = Vec::new();
                for chunk in chunks_for(values, 1) {
                    let mut qb = QueryBuilder::<Db>::new(statement);
                    let mut list = qb.separated(", ");
                    for value in chunk {
                        list.push_bind(*value);
                    }
                    qb.push(")");
                    rows.extend(
                        qb.build()
                            .fetch_all(&mut **tx)
                            .await
                            .map_err(StoreError::query(action))?,
                    );
                }
                Ok(rows)
            }

            /// Adds `counts` to the counters, in the caller's transaction.
            async fn bump(
                tx: &mut sqlx::Transaction<'static, Db>,
                counts: &Counts,
            ) -> Result<(), StoreError> {
                let shard = counter_shard();
                for (name, delta) in counts.changed() {
                    sqlx::query(
                        "INSERT INTO counters (name, shard, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (name, shard) DO UPDATE SET value = counters.value + $3",
                    )
                    .bind(name)
                    .bind(shard)
                    .bind(delta)
                    .execute(&mut **tx)
                    .await
                    .map_err(StoreError::query("updating counters"))?;
                }
                Ok(())
            }

            pub(crate) async fn lease_due(
                &self,
                now: DateTime<Utc>,
                limit: usize,
                lease: Duration,
            ) -> Result<Vec<DueUrl>, StoreError> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let now = micros(now);
                let until = lease_end(now, lease);
                let rows = sqlx::query(LEASE_SQL)
                    .bind(db_time(now))
                    .bind(db_time(until))
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.writer)
                    .await
                    .map_err(StoreError::query("leasing due URLs"))?;
                let read = || StoreError::query("reading leased URLs");
                let mut due = rows
                    .iter()
                    .map(|row| {
                        let url_id: i64 = row.try_get("url_id").map_err(read())?;
                        let purpose: String = row.try_get("next_purpose").map_err(read())?;
                        let due_at: DbTime = row.try_get("next_check_at").map_err(read())?;
                        Ok(DueUrl {
                            url_id,
                            url: row.try_get("url").map_err(read())?,
                            host: row.try_get("host").map_err(read())?,
                            purpose: parse_name(&format!("purpose of URL {url_id}"), &purpose)?,
                            due_at: from_db_time("next check time", due_at)?,
                            baseline: row.try_get("baseline").map_err(read())?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                due.sort_by_key(|d| (d.due_at, d.url_id));
                Ok(due)
            }

            pub(crate) async fn release(&self, url_ids: &[UrlId]) -> Result<(), StoreError> {
                self.update_listed(
                    "UPDATE urls SET lease_until = NULL WHERE url_id IN (",
                    url_ids,
                    "releasing leases",
                )
                .await
            }

            /// Runs `statement` (which ends in `IN (`) over `ids`, chunked to
            /// the backend's bind limit, in one transaction.
            async fn update_listed(
                &self,
                statement: &str,
                ids: &[i64],
                action: &'static str,
            ) -> Result<(), StoreError> {
                if ids.is_empty() {
                    return Ok(());
                }
                let mut tx = self
                    .writer
                    .begin_with(BEGIN_WRITE)
                    .await
                    .map_err(StoreError::query(action))?;
                for chunk in chunks_for(ids, 1) {
                    let mut qb = QueryBuilder::<Db>::new(statement);
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    qb.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query(action))?;
                }
                tx.commit().await.map_err(StoreError::query(action))
            }

            pub(crate) async fn extend_leases(
                &self,
                url_ids: &[UrlId],
                leased_at: DateTime<Utc>,
                reserved: Duration,
                lease: Duration,
            ) -> Result<u64, StoreError> {
                if url_ids.is_empty() {
                    return Ok(0);
                }
                let leased_at = micros(leased_at);
                let action = "extending leases";
                let mut tx = self
                    .writer
                    .begin_with(BEGIN_WRITE)
                    .await
                    .map_err(StoreError::query(action))?;
                let mut extended = 0;
                for chunk in chunks_for(url_ids, 1) {
                    let mut qb = QueryBuilder::<Db>::new("UPDATE urls SET lease_until = ");
                    qb.push_bind(db_time(lease_end(leased_at, lease)));
                    qb.push(" WHERE lease_until = ");
                    qb.push_bind(db_time(lease_end(leased_at, reserved)));
                    qb.push(" AND url_id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    let done = qb
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query(action))?;
                    extended += done.rows_affected();
                }
                tx.commit().await.map_err(StoreError::query(action))?;
                Ok(extended)
            }

            pub(crate) async fn hold(
                &self,
                holds: &[(UrlId, DateTime<Utc>)],
            ) -> Result<(), StoreError> {
                if holds.is_empty() {
                    return Ok(());
                }
                let mut tx = self
                    .writer
                    .begin_with(BEGIN_WRITE)
                    .await
                    .map_err(StoreError::query("starting to hold leases"))?;
                for (url_id, until) in holds {
                    sqlx::query("UPDATE urls SET lease_until = $1 WHERE url_id = $2")
                        .bind(db_time(micros(*until)))
                        .bind(*url_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query("holding leases"))?;
                }
                tx.commit()
                    .await
                    .map_err(StoreError::query("committing held leases"))
            }

            pub(crate) async fn release_all(&self) -> Result<u64, StoreError> {
                let done = sqlx::query("UPDATE urls SET lease_until = NULL WHERE lease_until IS NOT NULL")
                    .execute(&self.writer)
                    .await
                    .map_err(StoreError::query("releasing every lease"))?;
                Ok(done.rows_affected())
            }

            pub(crate) async fn apply_observations(
                &self,
                observations: &[Observation],
                now: DateTime<Utc>,
                rules: &Rules,
            ) -> Result<Applied, StoreError> {
                let now = micros(now);
                let mut applied = Applied::default();
                let mut seen = HashSet::new();
                let mut batch = Vec::with_capacity(observations.len());
                for obs in observations {
                    if seen.insert(obs.job_id) {
                        let mut obs = obs.clone();
                        obs.started_at = micros(obs.started_at);
                        obs.answered_at = micros(obs.answered_at);
                        batch.push(obs);
                    } else {
                        applied.duplicates += 1;
                    }
                }
                if batch.is_empty() {
                    return Ok(applied);
                }

                let mut tx = self
                    .writer
                    .begin_with(BEGIN_WRITE)
                    .await
                    .map_err(StoreError::query("starting to apply observations"))?;
                let url_ids: Vec<UrlId> = batch
                    .iter()
                    .map(|o| o.url_id)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut states = HashMap::with_capacity(url_ids.len());
                for chunk in chunks_for(&url_ids, 1) {
                    let mut qb =
                        QueryBuilder::<Db>::new("SELECT url_id, state FROM urls WHERE url_id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(") ORDER BY url_id");
                    qb.push(LOCK_ROWS);
                    let rows = qb
                        .build()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(StoreError::query("loading URL states"))?;
                    for row in &rows {
                        let (url_id, state) = decode_state(row)?;
                        states.insert(url_id, state);
                    }
                }

                let (known, unknown): (Vec<_>, Vec<_>) =
                    batch.into_iter().partition(|o| states.contains_key(&o.url_id));
                applied.unknown_url = unknown.iter().map(|o| o.job_id).collect();

                let mut inserted = HashSet::with_capacity(known.len());
                for chunk in chunks_for(&known, 27) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "INSERT INTO observations (job_id, url_id, url, worker, started_at, \
                         answered_at, duration_ms, dns_outcome, dns_answers, ip, asn, as_org, hoster, cdn, \
                         http_status, content_type, content_length, etag, last_modified, \
                         location, redirects, connection_reused, tls_error, fingerprint, \
                         outcome, verdict, stored_at) ",
                    );
                    qb.push_values(chunk, |mut row, obs| {
                        let c = ObservationColumns::new(obs);
                        row.push_bind(c.job_id)
                            .push_bind(c.url_id)
                            .push_bind(c.url)
                            .push_bind(c.worker)
                            .push_bind(db_time(c.started_at))
                            .push_bind(db_time(c.answered_at))
                            .push_bind(c.duration_ms)
                            .push_bind(c.dns_outcome)
                            .push_bind(Json(c.dns_answers))
                            .push_bind(c.ip)
                            .push_bind(c.asn)
                            .push_bind(c.as_org)
                            .push_bind(c.hoster)
                            .push_bind(c.cdn)
                            .push_bind(c.http_status)
                            .push_bind(c.content_type)
                            .push_bind(c.content_length)
                            .push_bind(c.etag)
                            .push_bind(c.last_modified)
                            .push_bind(c.location)
                            .push_bind(c.redirects.map(Json))
                            .push_bind(c.connection_reused)
                            .push_bind(c.tls_error)
                            .push_bind(c.fingerprint)
                            .push_bind(c.outcome)
                            .push_bind(c.verdict)
                            .push_bind(db_time(now));
                    });
                    qb.push(" ON CONFLICT (job_id) DO NOTHING RETURNING job_id");
                    let rows = qb
                        .build()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(StoreError::query("inserting observations"))?;
                    for row in rows {
                        let job_id: Uuid = row
                            .try_get(0)
                            .map_err(StoreError::query("reading stored job ids"))?;
                        inserted.insert(job_id);
                    }
                }
                applied.new = inserted.len();
                applied.duplicates += known.len() - inserted.len();

                let mut counts = Counts::default();
                let mut per_url: BTreeMap<UrlId, Vec<&Observation>> = BTreeMap::new();
                for obs in known.iter().filter(|o| inserted.contains(&o.job_id)) {
                    per_url.entry(obs.url_id).or_default().push(obs);
                    counts.add(UNATTRIBUTED, i64::from(obs.is_unattributed()));
                }
                counts.add(OBSERVATIONS, inserted.len() as i64);
                let mut changed = Vec::with_capacity(per_url.len());
                for (url_id, mut list) in per_url {
                    list.sort_by_key(|o| (o.started_at, o.job_id));
                    let before = states.remove(&url_id).expect("known URLs have a state");
                    let mut state = before.clone();
                    for obs in &list {
                        let (next, events) = advance(&state, obs, now, rules);
                        state = next;
                        applied.events.extend(events);
                    }
                    if state == before {
                        // Only ignored observations. A check that never
                        // contacted its host gives its URL back for an
                        // immediate re-dispatch; a stale one (older than the
                        // last applied check) leaves the lease to whoever
                        // holds it now.
                        let gave_up = list.iter().any(|o| {
                            o.outcome == Outcome::NotChecked
                                && before.last_check_at.is_none_or(|last| o.started_at > last)
                        });
                        if gave_up {
                            sqlx::query("UPDATE urls SET lease_until = NULL WHERE url_id = $1")
                                .bind(url_id)
                                .execute(&mut *tx)
                                .await
                                .map_err(StoreError::query("releasing unchecked URLs"))?;
                        }
                        continue;
                    }
                    if state.phase != before.phase {
                        counts.add(phase_counter(before.phase), -1);
                        counts.add(phase_counter(state.phase), 1);
                    }
                    changed.push((url_id, state));
                }
                write_states(&mut tx, &changed, now).await?;

                for chunk in chunks_for(&applied.events, 6) {
                    let mut qb = QueryBuilder::<Db>::new(
                        "INSERT INTO events (url_id, kind, at, payload, published, created_at) ",
                    );
                    qb.push_values(chunk, |mut row, event| {
                        row.push_bind(event.url_id)
                            .push_bind(event.kind.as_str())
                            .push_bind(db_time(micros(event.at)))
                            .push_bind(Json(event))
                            .push_bind(false)
                            .push_bind(db_time(now));
                    });
                    qb.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query("appending events to the outbox"))?;
                }
                counts.add(EVENTS, applied.events.len() as i64);
                Self::bump(&mut tx, &counts).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::query("committing observations"))?;
                Ok(applied)
            }

            pub(crate) async fn unpublished_events(
                &self,
                limit: usize,
            ) -> Result<Vec<(i64, Event)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT event_id, payload FROM events WHERE NOT published \
                     ORDER BY event_id LIMIT $1",
                )
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.reader)
                .await
                .map_err(StoreError::query("reading unpublished events"))?;
                rows.iter()
                    .map(|row| {
                        let id: i64 = row
                            .try_get("event_id")
                            .map_err(StoreError::query("reading unpublished events"))?;
                        let what = format!("event {id}");
                        let event = json_value(row, "payload", &what)?;
                        Ok((id, event))
                    })
                    .collect()
            }

            pub(crate) async fn mark_published(&self, ids: &[i64]) -> Result<(), StoreError> {
                self.update_listed(
                    "UPDATE events SET published = TRUE WHERE event_id IN (",
                    ids,
                    "marking events published",
                )
                .await
            }

            pub(crate) async fn states(
                &self,
                url_ids: &[UrlId],
            ) -> Result<Vec<UrlState>, StoreError> {
                let mut states = self
                    .read_listed(
                        "SELECT url_id, state FROM urls WHERE url_id IN (",
                        url_ids,
                        ")",
                        "reading URL states",
                        |row| Ok(decode_state(row)?.1),
                    )
                    .await?;
                states.sort_by_key(|s| s.subject.url_id);
                states.dedup_by_key(|s| s.subject.url_id);
                Ok(states)
            }

            pub(crate) async fn states_after(
                &self,
                after: Option<UrlId>,
                limit: usize,
            ) -> Result<Vec<UrlState>, StoreError> {
                let rows = sqlx::query(
                    "SELECT url_id, state FROM urls WHERE url_id > $1 \
                     ORDER BY url_id LIMIT $2",
                )
                .bind(after.unwrap_or(i64::MIN))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.reader)
                .await
                .map_err(StoreError::query("reading URL states"))?;
                rows.iter().map(|row| Ok(decode_state(row)?.1)).collect()
            }

            pub(crate) async fn states_in(
                &self,
                ids: std::ops::RangeInclusive<UrlId>,
            ) -> Result<Vec<UrlState>, StoreError> {
                let rows = sqlx::query(
                    "SELECT url_id, state FROM urls WHERE url_id >= $1 AND url_id <= $2 \
                     ORDER BY url_id",
                )
                .bind(*ids.start())
                .bind(*ids.end())
                .fetch_all(&self.reader)
                .await
                .map_err(StoreError::query("reading URL states"))?;
                rows.iter().map(|row| Ok(decode_state(row)?.1)).collect()
            }

            pub(crate) async fn url_ids(
                &self,
            ) -> Result<Option<std::ops::RangeInclusive<UrlId>>, StoreError> {
                let read = || StoreError::query("reading the range of URL ids");
                let row = sqlx::query("SELECT min(url_id) AS low, max(url_id) AS high FROM urls")
                    .fetch_one(&self.reader)
                    .await
                    .map_err(read())?;
                let low: Option<i64> = row.try_get("low").map_err(read())?;
                let high: Option<i64> = row.try_get("high").map_err(read())?;
                Ok(low.zip(high).map(|(low, high)| low..=high))
            }

            pub(crate) async fn all_states(&self) -> Result<Vec<UrlState>, StoreError> {
                const PAGE: usize = 1000;
                let mut states = Vec::new();
                loop {
                    let after = states.last().map(|s: &UrlState| s.subject.url_id);
                    let page = self.states_after(after, PAGE).await?;
                    let last_page = page.len() < PAGE;
                    states.extend(page);
                    if last_page {
                        return Ok(states);
                    }
                }
            }

            pub(crate) async fn events(&self, url_id: UrlId) -> Result<Vec<Event>, StoreError> {
                let rows = sqlx::query(
                    "SELECT event_id, payload FROM events WHERE url_id = $1 ORDER BY event_id",
                )
                .bind(url_id)
                .fetch_all(&self.reader)
                .await
                .map_err(StoreError::query("reading events"))?;
                rows.iter()
                    .map(|row| {
                        let id: i64 = row
                            .try_get("event_id")
                            .map_err(StoreError::query("reading events"))?;
                        let what = format!("event {id}");
                        json_value(row, "payload", &what)
                    })
                    .collect()
            }

            pub(crate) async fn observations(
                &self,
                url_id: UrlId,
            ) -> Result<Vec<Observation>, StoreError> {
                self.observations_of(&[url_id]).await
            }

            pub(crate) async fn observations_of(
                &self,
                url_ids: &[UrlId],
            ) -> Result<Vec<Observation>, StoreError> {
                let mut observations = self
                    .read_listed(
                        concat!(
                            "SELECT ",
                            observation_columns!(),
                            " FROM observations WHERE url_id IN ("
                        ),
                        url_ids,
                        ") ORDER BY url_id, started_at, job_id",
                        "reading observations",
                        decode_observation,
                    )
                    .await?;
                observations.sort_by_key(|o| o.url_id);
                Ok(observations)
            }

            /// Runs `statement` (which ends in `IN (`, and goes on with
            /// `tail` after the list) over `ids`, chunked to the backend's
            /// bind limit, and decodes each row.
            async fn read_listed<T>(
                &self,
                statement: &str,
                ids: &[i64],
                tail: &str,
                action: &'static str,
                decode: impl Fn(&DbRow) -> Result<T, StoreError>,
            ) -> Result<Vec<T>, StoreError> {
                let mut decoded = Vec::with_capacity(ids.len());
                for chunk in chunks_for(ids, 1) {
                    let mut qb = QueryBuilder::<Db>::new(statement);
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(tail);
                    let rows = qb
                        .build()
                        .fetch_all(&self.reader)
                        .await
                        .map_err(StoreError::query(action))?;
                    for row in &rows {
                        decoded.push(decode(row)?);
                    }
                }
                Ok(decoded)
            }

            pub(crate) async fn status(&self, now: DateTime<Utc>) -> Result<Status, StoreError> {
                let now = db_time(micros(now));
                let read = || StoreError::query("reading status counts");
                let mut status = Status::default();
                let rows = sqlx::query("SELECT name, CAST(SUM(value) AS BIGINT) AS n FROM counters GROUP BY name")
                    .fetch_all(&self.reader)
                    .await
                    .map_err(read())?;
                for row in &rows {
                    let name: String = row.try_get("name").map_err(read())?;
                    let n = count(row.try_get::<i64, _>("n").map_err(read())?);
                    match name.as_str() {
                        OBSERVATIONS => status.observations = n,
                        EVENTS => status.events = n,
                        UNATTRIBUTED => status.unattributed = n,
                        _ => {
                            let phase = name.strip_prefix("urls:").ok_or_else(|| {
                                StoreError::corrupt("counters", format!("unknown counter {name:?}"))
                            })?;
                            let phase: Phase = parse_name("phase counter", phase)?;
                            if n > 0 {
                                status.by_phase.push((phase, n));
                            }
                        }
                    }
                }
                status.by_phase.sort_by_key(|(phase, _)| phase_rank(*phase));

                // Time-dependent counts cannot be kept; they are counted up
                // to a cap, which keeps them cheap at any size.
                let capped = |sql: &'static str| {
                    let pool = self.reader.clone();
                    async move {
                        let row = sqlx::query(sql)
                            .bind(now)
                            .bind(to_i64(STATUS_CAP + 1))
                            .fetch_one(&pool)
                            .await
                            .map_err(read())?;
                        let n = count(row.try_get::<i64, _>(0).map_err(read())?);
                        Ok::<Capped, StoreError>(Capped::of(n))
                    }
                };
                status.due_now = capped(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM urls WHERE next_check_at <= $1 \
                     AND (lease_until IS NULL OR lease_until < $1) LIMIT $2) AS due",
                )
                .await?;
                status.leased = capped(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM urls WHERE lease_until >= $1 LIMIT $2) \
                     AS leased",
                )
                .await?;
                let next = sqlx::query(
                    "SELECT next_check_at FROM urls WHERE next_check_at IS NOT NULL \
                     AND (lease_until IS NULL OR lease_until < $1) \
                     ORDER BY next_check_at LIMIT 1",
                )
                .bind(now)
                .fetch_optional(&self.reader)
                .await
                .map_err(read())?;
                status.next_due = match next {
                    Some(row) => {
                        let at: DbTime = row.try_get(0).map_err(read())?;
                        Some(from_db_time("next check time", at)?)
                    }
                    None => None,
                };
                Ok(status)
            }
        }

        /// A JSON column that is never NULL, parsed into `T`.
        fn json_value<T: DeserializeOwned>(
            row: &DbRow,
            column: &str,
            what: &str,
        ) -> Result<T, StoreError> {
            json_opt(row, column, what)?.ok_or_else(|| StoreError::corrupt(what, "NULL"))
        }

        fn decode_state(row: &DbRow) -> Result<(UrlId, UrlState), StoreError> {
            let url_id: i64 = row
                .try_get("url_id")
                .map_err(StoreError::query("reading URL states"))?;
            let what = format!("state of URL {url_id}");
            let state = json_value(row, "state", &what)?;
            Ok((url_id, state))
        }

        fn decode_observation(row: &DbRow) -> Result<Observation, StoreError> {
            fn get<'r, T>(row: &'r DbRow, column: &str) -> Result<T, StoreError>
            where
                T: sqlx::Decode<'r, Db> + sqlx::Type<Db>,
            {
                row.try_get(column)
                    .map_err(StoreError::query("reading observations"))
            }
            let job_id: Uuid = get(row, "job_id")?;
            let what = format!("observation {job_id}");
            ObservationColumns {
                job_id,
                url_id: get(row, "url_id")?,
                url: get(row, "url")?,
                worker: get(row, "worker")?,
                started_at: from_db_time(&what, get(row, "started_at")?)?,
                answered_at: from_db_time(&what, get(row, "answered_at")?)?,
                duration_ms: get(row, "duration_ms")?,
                dns_outcome: get(row, "dns_outcome")?,
                dns_answers: json_value(row, "dns_answers", &what)?,
                ip: get(row, "ip")?,
                asn: get(row, "asn")?,
                as_org: get(row, "as_org")?,
                hoster: get(row, "hoster")?,
                cdn: get(row, "cdn")?,
                http_status: get(row, "http_status")?,
                content_type: get(row, "content_type")?,
                content_length: get(row, "content_length")?,
                etag: get(row, "etag")?,
                last_modified: get(row, "last_modified")?,
                location: get(row, "location")?,
                redirects: json_opt(row, "redirects", &what)?,
                connection_reused: get(row, "connection_reused")?,
                tls_error: get(row, "tls_error")?,
                fingerprint: get(row, "fingerprint")?,
                outcome: get(row, "outcome")?,
                verdict: get(row, "verdict")?,
            }
            .into_observation()
        }
    };
}

/// A notice of an `add_notices` call that is not a duplicate within the call.
pub(crate) struct Candidate<'a> {
    pub index: usize,
    pub notice: &'a Notice,
    /// The notice time truncated to the microsecond.
    pub notified_at: DateTime<Utc>,
}

impl Candidate<'_> {
    pub fn url_and_time(&self) -> (&str, DateTime<Utc>) {
        (self.notice.url.as_str(), self.notified_at)
    }

    pub fn id_key(&self) -> Option<DuplicateKey> {
        self.notice.notice_id.clone().map(DuplicateKey::NoticeId)
    }

    pub fn url_key(&self) -> DuplicateKey {
        DuplicateKey::UrlAndTime {
            url: self.notice.url.clone(),
            notified_at: self.notified_at,
        }
    }
}

/// The keys of stored notices that some candidates repeat.
#[derive(Default)]
pub(crate) struct StoredKeys {
    pub notice_ids: HashSet<String>,
    pub url_times: HashSet<(String, DateTime<Utc>)>,
}

impl StoredKeys {
    /// The key a candidate repeats, the notice id first.
    pub fn duplicate(&self, candidate: &Candidate<'_>) -> Option<DuplicateKey> {
        if let Some(id) = &candidate.notice.notice_id
            && self.notice_ids.contains(id)
        {
            return candidate.id_key();
        }
        let key = (
            candidate.notice.url.as_str().to_owned(),
            candidate.notified_at,
        );
        self.url_times.contains(&key).then(|| candidate.url_key())
    }
}

/// `now + lease`, bounded to a century so that the date cannot overflow.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let century = TimeDelta::days(36_525);
    let lease = TimeDelta::from_std(lease).map_or(century, |d| d.min(century));
    micros(now + lease)
}

/// Counter names (see the `counters` migration).
pub(crate) const OBSERVATIONS: &str = "observations";
pub(crate) const EVENTS: &str = "events";
pub(crate) const UNATTRIBUTED: &str = "unattributed";

pub(crate) fn phase_counter(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "urls:pending",
        Phase::Unseen => "urls:unseen",
        Phase::Online => "urls:online",
        Phase::Offline => "urls:offline",
        Phase::Expired => "urls:expired",
    }
}

/// Counter changes of one transaction.
#[derive(Default)]
pub(crate) struct Counts(BTreeMap<&'static str, i64>);

impl Counts {
    pub fn add(&mut self, name: &'static str, delta: i64) {
        *self.0.entry(name).or_default() += delta;
    }

    pub fn changed(&self) -> impl Iterator<Item = (&'static str, i64)> + '_ {
        self.0
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|(n, d)| (*n, *d))
    }
}

/// Counts of rows that depend on the time are made up to this many.
pub(crate) const STATUS_CAP: u64 = 10_000;

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn phase_rank(phase: Phase) -> u8 {
    match phase {
        Phase::Pending => 0,
        Phase::Unseen => 1,
        Phase::Online => 2,
        Phase::Offline => 3,
        Phase::Expired => 4,
    }
}

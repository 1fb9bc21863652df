//! Runs each store test on both backends: SQLite in a temporary directory,
//! and PostgreSQL in a fresh, randomly named schema that is dropped when the
//! test ends, whether it passed or panicked.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/test` unless the
//! environment variable `TDMON_TEST_POSTGRES` names another database; set it
//! to `off` to skip the PostgreSQL runs (they then print that they skipped).

use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tdmon_store::{Store, StoreOptions};
use tempfile::TempDir;

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store under test and what it takes to open it again.
pub struct TestDb {
    pub store: Store,
    url: String,
    options: StoreOptions,
    _cleanup: Cleanup,
}

/// Held for its `Drop`: removes the directory or drops the schema.
#[allow(dead_code)]
enum Cleanup {
    Sqlite(TempDir),
    Postgres(SchemaGuard),
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("tdmon.db").display());
        let options = StoreOptions::default();
        let store = Store::open_with(&url, &options)
            .await
            .expect("open SQLite store");
        TestDb {
            store,
            url,
            options,
            _cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// The PostgreSQL schema the tables are in.
    pub fn schema(&self) -> Option<&str> {
        self.options.schema.as_deref()
    }

    /// `None` when PostgreSQL runs are switched off.
    pub async fn postgres() -> Option<TestDb> {
        let url = std::env::var("TDMON_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.into());
        if url == "off" {
            eprintln!("TDMON_TEST_POSTGRES=off: PostgreSQL run skipped");
            return None;
        }
        let schema = format!("tdmon_test_{}", uuid::Uuid::new_v4().simple());
        // The guard exists before the schema does, so that a failure while
        // opening still drops whatever was created.
        let guard = SchemaGuard {
            url: url.clone(),
            schema: schema.clone(),
        };
        let options = StoreOptions {
            schema: Some(schema),
        };
        let store = Store::open_with(&url, &options)
            .await
            .expect("open PostgreSQL store (is it running? see TDMON_TEST_POSTGRES)");
        Some(TestDb {
            store,
            url,
            options,
            _cleanup: Cleanup::Postgres(guard),
        })
    }

    /// Another handle on the same database, as a second process would open it.
    pub async fn open_again(&self) -> Store {
        Store::open_with(&self.url, &self.options)
            .await
            .expect("open the store again")
    }

    /// Runs `sql` (one or more statements) on the store's database, in its
    /// schema, over a connection of its own: for what no store call does.
    pub async fn execute(&self, sql: &str) {
        match &self._cleanup {
            Cleanup::Sqlite(_) => {
                let mut conn = SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
            Cleanup::Postgres(guard) => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                let sql = format!("SET search_path = {}; {sql}", guard.schema);
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// The SQLite file's URL (SQLite runs only).
    pub fn sqlite_url(&self) -> Option<&str> {
        matches!(self._cleanup, Cleanup::Sqlite(_)).then_some(self.url.as_str())
    }
}

/// Drops a test schema on drop, over a fresh connection on a thread of its
/// own (the test's runtime may be gone or panicking).
struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&url).await?;
                // Wait for the pool's connections of a panicking test to let go.
                sqlx::query("SET lock_timeout = '20s'")
                    .execute(&mut conn)
                    .await?;
                sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.schema),
            Err(_) => eprintln!("could not drop test schema {}: panicked", self.schema),
        }
    }
}

/// Runs each listed `async fn(&TestDb)` once per backend, as
/// `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::support::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = $crate::support::TestDb::postgres().await else {
                        return;
                    };
                    super::$name(&db).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

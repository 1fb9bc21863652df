//! The store's errors. Each message says its own layer's part once: the
//! store's [`StoreError`] what the store was doing, [`OpenError`] why a
//! database could not be reached, and [`DriverError`] what the database
//! driver reported. Store URLs in messages have their secrets masked
//! ([`tdmon_core::url::mask_url`]).

use std::time::Duration;

use thiserror::Error;

/// What went wrong in the store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no backend this build knows.
    #[error("unsupported store URL {0}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// A PostgreSQL schema name that is not a plain lowercase identifier.
    #[error(
        "invalid schema name {0:?}: use at most 63 lowercase letters, digits \
         and '_', not starting with a digit"
    )]
    InvalidSchema(String),
    /// The database could not be opened or connected to.
    #[error("cannot open the store at {url}")]
    Open {
        /// The store URL, secrets masked.
        url: String,
        #[source]
        source: OpenError,
    },
    /// The embedded migrations could not be applied.
    #[error("cannot apply the store's migrations")]
    Migrate(#[source] DriverError),
    /// A statement failed while doing `action`.
    #[error("store query failed while {action}")]
    Query {
        action: &'static str,
        #[source]
        source: DriverError,
    },
    /// A stored value does not parse back into what was written.
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt { what: String, detail: String },
    /// The lock file of a SQLite store could not be created or locked.
    #[error("cannot lock {path}")]
    LockFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Another monitor already runs on this store.
    #[error("another tdmon run is already monitoring {store} ({holder})")]
    Locked {
        /// The SQLite file or the PostgreSQL schema.
        store: String,
        /// What holds the lock, for the operator to find it.
        holder: String,
    },
}

impl StoreError {
    /// True when the store URL or options are at fault (a configuration
    /// mistake to fix) rather than the database or the network.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StoreError::UnsupportedUrl(_)
                | StoreError::InvalidSchema(_)
                | StoreError::Open {
                    source: OpenError::Url(_) | OpenError::UnknownParameter(_),
                    ..
                }
        )
    }

    pub(crate) fn query(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query {
            action,
            source: source.into(),
        }
    }

    pub(crate) fn migrate(source: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Migrate(source.into())
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL (or its options) is not valid for its backend.
    #[error("{0}")]
    Url(DriverError),
    /// A PostgreSQL connection parameter that tdmon does not pass on: the
    /// driver would ignore it, and log its value.
    #[error("unknown connection parameter {0:?}")]
    UnknownParameter(String),
    /// Nothing listens on the server's address.
    #[error("{addr} refused the connection: is PostgreSQL running and listening there?")]
    Refused { addr: String },
    /// The server's address did not answer in time.
    #[error("{addr} did not answer within {}s", .after.as_secs())]
    NoAnswer { addr: String, after: Duration },
    /// The server stayed in its start-up or shutdown for too long.
    #[error("{addr} was still starting up after {}s", .after.as_secs())]
    NotReady {
        addr: String,
        after: Duration,
        source: DriverError,
    },
    /// Another failure, as the driver reports it.
    #[error("{0}")]
    Driver(DriverError),
}

impl From<sqlx::Error> for OpenError {
    fn from(error: sqlx::Error) -> Self {
        OpenError::Driver(error.into())
    }
}

/// An error of the database driver (sqlx), worded as the driver words it.
/// sqlx's messages already include their cause (`error returned from
/// database: (code: 14) unable to open database file`), so the chain ends
/// here: printed with its sources, the cause appears once.
#[derive(Debug)]
pub struct DriverError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DriverError {}

impl From<sqlx::Error> for DriverError {
    fn from(error: sqlx::Error) -> Self {
        DriverError(Box::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for DriverError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        DriverError(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layer of an error and its sources, as `{:#}` prints them.
    fn chain(error: &dyn std::error::Error) -> Vec<String> {
        let mut layers = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            layers.push(cause.to_string());
            source = cause.source();
        }
        layers
    }

    #[test]
    fn a_driver_error_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let error = StoreError::Open {
            url: "sqlite://x.db".into(),
            source: OpenError::from(sqlx::Error::Io(io)),
        };
        let layers = chain(&error);
        assert_eq!(
            layers,
            [
                "cannot open the store at sqlite://x.db",
                "error communicating with database: denied",
            ]
        );
    }
}

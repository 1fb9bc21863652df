//! The store's errors, and the masking of passwords in store URLs.

use thiserror::Error;

/// What went wrong in the store. Each message describes the store's own layer;
/// the database driver's error is the [`source`](std::error::Error::source).
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
    /// The database could not be opened or connected to. The URL is shown
    /// with its password masked.
    #[error("cannot open the store at {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The embedded migrations could not be applied.
    #[error("cannot apply the store's migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A statement failed while doing `action`.
    #[error("store query failed while {action}")]
    Query {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value does not parse back into what was written.
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt { what: String, detail: String },
}

impl StoreError {
    pub(crate) fn query(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { action, source }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// `url` with its password (if any) replaced by `***`, safe to print.
/// A URL that does not parse is reduced to its scheme, since it might still
/// hold a secret.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => match url.split_once(':') {
            Some((scheme, _)) if !scheme.contains('@') => format!("{scheme}:(unparsable URL)"),
            _ => "(unparsable URL)".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        let masked = mask_url("postgres://tdmon:s3cret@db.example:5432/tdmon");
        assert_eq!(masked, "postgres://tdmon:***@db.example:5432/tdmon");
        assert_eq!(
            mask_url("postgres://tdmon@localhost/test"),
            "postgres://tdmon@localhost/test"
        );
        assert!(!mask_url("postgres://u:s3cret@[bad/x").contains("s3cret"));
        assert_eq!(mask_url("sqlite://data/tdmon.db"), "sqlite://data/tdmon.db");
    }

    #[test]
    fn open_error_shows_masked_url_once() {
        let err = StoreError::Open {
            url: mask_url("postgres://u:s3cret@h/db"),
            source: sqlx::Error::PoolTimedOut,
        };
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("timed out"), "source repeated: {text}");
    }
}

//! The `[http]` table.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The `[http]` table as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `HOST:PORT` to serve on; empty (the default) serves nothing. Port 0
    /// takes a free port, which the process logs.
    pub listen: String,
    /// The bearer token the API requires; empty disables the API (health and
    /// metrics stay open). Never shown or logged.
    pub token: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// Default body limit: 16 MiB, about 100,000 notices of typical length.
const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            token: String::new(),
            max_body_bytes: DEFAULT_MAX_BODY,
        }
    }
}

/// A setting of `[http]` that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("http.listen: {0:?} is not HOST:PORT with an IP address, e.g. 127.0.0.1:9464")]
    Listen(String),
    #[error("http.max_body_bytes must be greater than zero")]
    MaxBody,
    #[error("http.token must be at least {MIN_TOKEN_LEN} characters long")]
    ShortToken,
}

/// Tokens shorter than this are refused: a guessable token is no protection.
const MIN_TOKEN_LEN: usize = 16;

/// The validated `[http]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: Option<SocketAddr>,
    pub(crate) token: Option<String>,
    pub max_body_bytes: usize,
}

/// Shows everything but the token.
impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl HttpConfig {
    pub fn validate(self) -> Result<HttpSettings, ConfigError> {
        let listen = match self.listen.trim() {
            "" => None,
            text => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Listen(text.to_owned()))?,
            ),
        };
        if self.max_body_bytes == 0 {
            return Err(ConfigError::MaxBody);
        }
        let token = match self.token.as_str() {
            "" => None,
            token if token.chars().count() < MIN_TOKEN_LEN => return Err(ConfigError::ShortToken),
            token => Some(token.to_owned()),
        };
        Ok(HttpSettings {
            listen,
            token,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_addresses_checked() {
        let settings = HttpConfig::default().validate().unwrap();
        assert_eq!(settings.listen, None);
        assert_eq!(settings.token, None);
        let on = HttpConfig {
            listen: "127.0.0.1:9464".into(),
            token: "a-token-long-enough".into(),
            ..HttpConfig::default()
        }
        .validate()
        .unwrap();
        assert_eq!(on.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(!format!("{on:?}").contains("long-enough"), "{on:?}");
        let bad = HttpConfig {
            listen: "localhost:9464".into(),
            ..HttpConfig::default()
        };
        assert!(matches!(bad.validate(), Err(ConfigError::Listen(_))));
        let short = HttpConfig {
            token: "secret".into(),
            ..HttpConfig::default()
        };
        assert_eq!(short.validate(), Err(ConfigError::ShortToken));
    }
}

//! The API's bearer token, compared in constant time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// The configured token, kept as its digest: comparing digests of equal
/// length in constant time reveals neither the token nor its length.
#[derive(Clone)]
pub(crate) struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    pub(crate) fn new(token: String) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// True when `headers` carry `Authorization: Bearer <this token>`.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given).into();
        given.ct_eq(&self.0).into()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_bearer_token_itself_is_admitted() {
        let token = Token::new("correct-horse-battery".into());
        assert!(token.admits(&with("Bearer correct-horse-battery")));
        assert!(!token.admits(&with("Bearer correct-horse-batter")));
        assert!(!token.admits(&with("Basic correct-horse-battery")));
        assert!(!token.admits(&with("correct-horse-battery")));
        assert!(!token.admits(&HeaderMap::new()));
        assert!(!format!("{token:?}").contains("horse"));
    }
}

//! The URL of a notice, normalised once so that two spellings of one request
//! are one URL everywhere: in the store, in check jobs, in the report.
//!
//! [`NormalizedUrl::parse`] is the only way to make one, and deserialization
//! goes through it. The rules:
//!
//! - leading and trailing whitespace is trimmed; the rest may be at most
//!   [`MAX_URL_LEN`] bytes, and so may the normalised form (percent-encoding
//!   can lengthen it), so that normalising a normalised URL never fails;
//! - control characters (U+0000 to U+001F, U+007F) inside the URL are refused
//!   rather than silently dropped, as the URL Standard would drop tabs and
//!   line breaks;
//! - only `http` and `https`, written out as `scheme://host` (the lenient
//!   `http:host`, `http:/host` and `http:///host` that browsers repair are
//!   refused), with a non-empty host and no credentials (a user name or
//!   password in a notice would end up in logs and reports);
//! - the scheme and host are lowercased, an international host name becomes
//!   punycode (`Bücher.example` is `xn--bcher-kva.example`), an IPv4 address in
//!   another notation becomes dotted decimal, the default port (80 for http,
//!   443 for https) is dropped, and so is the fragment, which is never sent;
//! - the path and query are kept as the `url` crate (the WHATWG URL Standard)
//!   serializes them, which is exactly what an HTTP client sends: existing
//!   percent-escapes are kept as written (no decoding, no change of hex case),
//!   query parameters keep their order, and nothing is re-encoded. What the
//!   standard does change: characters that may not appear in a URL are
//!   percent-encoded as UTF-8 (space, `"`, `<`, `>`, `` ` ``, `{`, `}` and
//!   non-ASCII in the path; space, `"`, `'`, `<`, `>` and non-ASCII in the
//!   query), `.` and `..` path segments (also as `%2e`) are resolved, `\`
//!   becomes `/`, and an empty path becomes `/`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use url::Url;

/// The longest URL accepted, in bytes, both as given (after trimming) and once
/// normalised. Browsers and servers commonly cap URLs near this length.
pub const MAX_URL_LEN: usize = 2048;

/// Why a string is not a usable notice URL. Each message says what is wrong
/// and does not repeat the URL; the caller quotes it where that helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    #[error("empty")]
    Empty,
    #[error("{len} bytes long, over the {MAX_URL_LEN}-byte limit")]
    TooLong { len: usize },
    #[error("{len} bytes long once percent-encoded, over the {MAX_URL_LEN}-byte limit")]
    TooLongNormalized { len: usize },
    #[error("contains control character 0x{byte:02x} at byte {offset}")]
    ControlCharacter { byte: u8, offset: usize },
    #[error("not an absolute URL: it needs a scheme, as in https://example.com/")]
    Relative,
    #[error("not a valid URL: {0}")]
    Syntax(url::ParseError),
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("contains credentials (a user name or password), which a notice must not carry")]
    Credentials,
    #[error("has no host")]
    EmptyHost,
    #[error("has no \"//\" after the scheme; write it as http://host/path")]
    NoSlashes,
}

/// A notice URL in normal form: see the module documentation for the rules.
/// Ordered, compared and hashed by its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct NormalizedUrl(Url);

impl NormalizedUrl {
    /// Checks `input` against the rules and returns its normal form.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(UrlError::Empty);
        }
        if text.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong { len: text.len() });
        }
        if let Some((offset, byte)) = text
            .bytes()
            .enumerate()
            .find(|&(_, b)| b.is_ascii_control())
        {
            return Err(UrlError::ControlCharacter { byte, offset });
        }

        let mut url = Url::parse(text).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => UrlError::Relative,
            url::ParseError::EmptyHost => UrlError::EmptyHost,
            other => UrlError::Syntax(other),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        // The URL Standard reads `http:/host`, `http:host` and `http:///host`
        // as `http://host/`; a notice is written out in full or refused, so
        // that a mangled URL is not silently turned into another one.
        let after_scheme = &text[url.scheme().len() + 1..];
        match after_scheme.strip_prefix("//") {
            None => return Err(UrlError::NoSlashes),
            Some(rest) if rest.starts_with(['/', '\\']) => return Err(UrlError::EmptyHost),
            Some(_) => {}
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::EmptyHost);
        }
        // The parser has already lowercased the scheme and host, applied IDNA
        // and dropped a default port; only the fragment is left to drop.
        url.set_fragment(None);

        let len = url.as_str().len();
        if len > MAX_URL_LEN {
            return Err(UrlError::TooLongNormalized { len });
        }
        Ok(NormalizedUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host as it appears in the URL: a lowercase ASCII (punycode) domain,
    /// a dotted IPv4 address, or an IPv6 address in brackets.
    pub fn host(&self) -> &str {
        // The constructor refuses a URL without a host.
        self.0.host_str().unwrap_or_default()
    }

    /// The parsed form, for an HTTP client.
    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for NormalizedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NormalizedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NormalizedUrl")
            .field(&self.as_str())
            .finish()
    }
}

impl FromStr for NormalizedUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NormalizedUrl::parse(s)
    }
}

impl TryFrom<String> for NormalizedUrl {
    type Error = UrlError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        NormalizedUrl::parse(&s)
    }
}

impl TryFrom<&str> for NormalizedUrl {
    type Error = UrlError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        NormalizedUrl::parse(s)
    }
}

impl From<NormalizedUrl> for String {
    fn from(url: NormalizedUrl) -> Self {
        url.0.into()
    }
}

impl AsRef<str> for NormalizedUrl {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for NormalizedUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a masked secret is shown as.
pub const MASK: &str = "***";

/// `value` with the secrets of the URL in it replaced by [`MASK`], safe to
/// print: the password of the user information (`postgres://user:***@host`)
/// and the value of every query parameter whose name suggests a secret
/// (`?password=***`, `sslpassword`, `passwd`, `pwd`, `secret`, `token`). The
/// user name and the rest are kept as written. This is the one function that
/// every printed store URL, configuration value and rejected URL goes through.
///
/// The URL runs from its scheme to the end of `value`. A URL that does not
/// parse is masked more widely: its user information is taken to end at the
/// last `@`, so that a password with an unescaped `/`, `?`, `#` or space is
/// hidden too.
pub fn mask_url(value: &str) -> Cow<'_, str> {
    let start = url_start(value);
    let url = &value[start..];
    let mut hidden: Vec<std::ops::Range<usize>> = Vec::new();
    if let Some(password) = password_range(url) {
        hidden.push(password);
    }
    let authority_end = hidden.last().map_or(0, |password| password.end);
    hidden.extend(secret_parameters(url, authority_end));
    if hidden.is_empty() {
        return Cow::Borrowed(value);
    }
    let mut masked = String::with_capacity(value.len());
    masked.push_str(&value[..start]);
    let mut copied = 0;
    for range in hidden {
        masked.push_str(&url[copied..range.start]);
        masked.push_str(MASK);
        copied = range.end;
    }
    masked.push_str(&url[copied..]);
    Cow::Owned(masked)
}

/// Where the URL in `value` starts: at the scheme before the first `://`, or
/// at 0 when there is none.
fn url_start(value: &str) -> usize {
    let Some(separator) = value.find("://") else {
        return 0;
    };
    let scheme_len = value[..separator]
        .bytes()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        .count();
    separator - scheme_len
}

/// The non-empty password of `url`'s user information, as a byte range.
fn password_range(url: &str) -> Option<std::ops::Range<usize>> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_len = if Url::parse(url).is_ok() {
        rest.find(['/', '?', '#']).unwrap_or(rest.len())
    } else {
        rest.len()
    };
    let at = rest[..authority_len].rfind('@')?;
    let colon = rest[..at].find(':')?;
    (colon + 1 < at).then(|| authority_start + colon + 1..authority_start + at)
}

/// The values of query parameters with a secret's name, after `from`.
fn secret_parameters(url: &str, from: usize) -> Vec<std::ops::Range<usize>> {
    let Some(question) = url[from..].find('?').map(|i| from + i) else {
        return Vec::new();
    };
    let query_end = url[question..]
        .find('#')
        .map_or(url.len(), |i| question + i);
    let mut secrets = Vec::new();
    let mut offset = question + 1;
    for pair in url[question + 1..query_end].split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && is_secret_name(key)
            && !value.is_empty()
        {
            let start = offset + key.len() + 1;
            secrets.push(start..start + value.len());
        }
        offset += pair.len() + 1;
    }
    secrets
}

fn is_secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(input: &str) -> String {
        match NormalizedUrl::parse(input) {
            Ok(url) => url.as_str().to_owned(),
            Err(e) => panic!("{input:?} was rejected: {e}"),
        }
    }

    fn err(input: &str) -> UrlError {
        match NormalizedUrl::parse(input) {
            Ok(url) => panic!("{input:?} was accepted as {url}"),
            Err(e) => e,
        }
    }

    #[test]
    fn lowercases_scheme_and_host_but_not_path_or_query() {
        assert_eq!(
            norm("HTTPS://WWW.Example.COM/Some/Path?Q=Upper"),
            "https://www.example.com/Some/Path?Q=Upper"
        );
    }

    #[test]
    fn international_hosts_become_punycode() {
        assert_eq!(
            norm("http://Bücher.example/"),
            "http://xn--bcher-kva.example/"
        );
        assert_eq!(
            norm("https://MÜNCHEN.example/a"),
            "https://xn--mnchen-3ya.example/a"
        );
        // Already punycode stays as it is.
        assert_eq!(
            norm("http://xn--bcher-kva.example/"),
            "http://xn--bcher-kva.example/"
        );
    }

    #[test]
    fn default_ports_are_dropped_and_others_kept() {
        assert_eq!(norm("http://example.com:80/x"), "http://example.com/x");
        assert_eq!(norm("https://example.com:443/x"), "https://example.com/x");
        assert_eq!(norm("http://example.com:443/x"), "http://example.com:443/x");
        assert_eq!(norm("https://example.com:80/x"), "https://example.com:80/x");
        assert_eq!(
            norm("http://example.com:8080/x"),
            "http://example.com:8080/x"
        );
    }

    #[test]
    fn fragment_is_dropped() {
        assert_eq!(
            norm("https://example.com/a?b=c#section-2"),
            "https://example.com/a?b=c"
        );
        assert_eq!(norm("https://example.com/#"), "https://example.com/");
    }

    #[test]
    fn path_and_query_keep_escapes_and_order() {
        // Escapes are neither decoded nor re-cased, parameters not reordered,
        // and an encoded slash stays encoded.
        assert_eq!(
            norm("https://example.com/a%2Fb/%7euser/%e2%82%AC?z=1&a=%41&a=2&&"),
            "https://example.com/a%2Fb/%7euser/%e2%82%AC?z=1&a=%41&a=2&&"
        );
        // Characters that are allowed unescaped stay unescaped.
        assert_eq!(
            norm("https://example.com/a;b=c,d!$'()*+:@~/?x=[1]|^"),
            "https://example.com/a;b=c,d!$'()*+:@~/?x=[1]|^"
        );
    }

    #[test]
    fn characters_not_allowed_in_urls_are_percent_encoded() {
        // This is what the url crate (the URL Standard) does, and what any
        // HTTP client would send: documented in the module doc.
        assert_eq!(
            norm("https://example.com/a b/\"q\"/<x>/`{y}`/é?q=a b&c=\"'<é>"),
            "https://example.com/a%20b/%22q%22/%3Cx%3E/%60%7By%7D%60/%C3%A9?q=a%20b&c=%22%27%3C%C3%A9%3E"
        );
    }

    #[test]
    fn dot_segments_backslashes_and_empty_paths_are_normalised() {
        assert_eq!(
            norm("https://example.com/a/./b/../c"),
            "https://example.com/a/c"
        );
        assert_eq!(
            norm("https://example.com/a/%2e%2E/c"),
            "https://example.com/c"
        );
        assert_eq!(norm("https://example.com\\a\\b"), "https://example.com/a/b");
        assert_eq!(norm("https://example.com"), "https://example.com/");
        assert_eq!(norm("https://example.com?q"), "https://example.com/?q");
    }

    #[test]
    fn ip_hosts() {
        assert_eq!(norm("http://127.0.0.1:80/"), "http://127.0.0.1/");
        assert_eq!(norm("http://0x7f.1/"), "http://127.0.0.1/");
        assert_eq!(
            norm("http://[::FFFF:7f00:1]:8080/"),
            "http://[::ffff:7f00:1]:8080/"
        );
        assert_eq!(
            NormalizedUrl::parse("http://[2001:DB8::1]/")
                .unwrap()
                .host(),
            "[2001:db8::1]"
        );
    }

    #[test]
    fn only_http_and_https() {
        assert_eq!(err("ftp://example.com/x"), UrlError::Scheme("ftp".into()));
        assert_eq!(
            err("JavaScript:alert(1)"),
            UrlError::Scheme("javascript".into())
        );
        assert_eq!(
            err("file:///etc/passwd").to_string(),
            "scheme \"file\" is not http or https"
        );
        assert_eq!(err("example.com/path"), UrlError::Relative);
        assert_eq!(err("//example.com/path"), UrlError::Relative);
    }

    #[test]
    fn credentials_are_refused() {
        assert_eq!(err("http://user@example.com/"), UrlError::Credentials);
        assert_eq!(err("http://user:pw@example.com/"), UrlError::Credentials);
        assert_eq!(err("http://:pw@example.com/"), UrlError::Credentials);
        // An empty userinfo carries nothing and is dropped.
        assert_eq!(norm("http://@example.com/"), "http://example.com/");
    }

    #[test]
    fn empty_host_is_refused() {
        assert_eq!(err("http://"), UrlError::EmptyHost);
        assert_eq!(err("https:///path"), UrlError::EmptyHost);
        assert_eq!(err("http://:8080/"), UrlError::EmptyHost);
        assert_eq!(err("https://?q"), UrlError::EmptyHost);
        assert_eq!(err("https:////example.com/"), UrlError::EmptyHost);
        assert_eq!(err("https://\\example.com/"), UrlError::EmptyHost);
    }

    #[test]
    fn the_host_must_follow_two_slashes() {
        // The URL Standard would read all of these as http://example.com/a.
        assert_eq!(err("http:example.com/a"), UrlError::NoSlashes);
        assert_eq!(err("http:/example.com/a"), UrlError::NoSlashes);
        assert_eq!(err("HTTP:\\\\example.com/a"), UrlError::NoSlashes);
        assert_eq!(norm("HTTP://example.com/a"), "http://example.com/a");
    }

    #[test]
    fn malformed_urls_say_why() {
        assert!(matches!(err("http://exa mple.com/"), UrlError::Syntax(_)));
        assert_eq!(
            err("http://example.com:99999/").to_string(),
            "not a valid URL: invalid port number"
        );
        assert!(matches!(err("http://[::1/"), UrlError::Syntax(_)));
    }

    #[test]
    fn whitespace_is_trimmed_and_control_characters_refused() {
        assert_eq!(
            norm("  \t https://example.com/a \r\n"),
            "https://example.com/a"
        );
        assert_eq!(err(""), UrlError::Empty);
        assert_eq!(err(" \t "), UrlError::Empty);
        assert_eq!(
            err("https://exam\tple.com/"),
            UrlError::ControlCharacter {
                byte: b'\t',
                offset: 12
            }
        );
        assert!(matches!(
            err("https://example.com/a\nb"),
            UrlError::ControlCharacter { byte: b'\n', .. }
        ));
        assert!(matches!(
            err("https://example.com/\u{7f}"),
            UrlError::ControlCharacter { byte: 0x7f, .. }
        ));
    }

    #[test]
    fn length_is_capped() {
        let base = "https://example.com/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_URL_LEN - base.len()));
        assert_eq!(norm(&at_limit).len(), MAX_URL_LEN);
        // Surrounding whitespace does not count.
        assert_eq!(norm(&format!("  {at_limit}  ")).len(), MAX_URL_LEN);

        let over = format!("{at_limit}a");
        assert_eq!(
            err(&over),
            UrlError::TooLong {
                len: MAX_URL_LEN + 1
            }
        );

        // Short enough as given, too long once the spaces become %20.
        let spaces = format!("{base}{}", " a".repeat(700));
        assert!(spaces.len() <= MAX_URL_LEN);
        assert_eq!(
            err(&spaces),
            UrlError::TooLongNormalized {
                len: base.len() + 700 * 4
            }
        );
    }

    #[test]
    fn accessors_and_serde_go_through_the_rule() {
        let url = NormalizedUrl::parse("HTTPS://Bücher.Example:443/x?y#z").unwrap();
        assert_eq!(url.host(), "xn--bcher-kva.example");
        assert_eq!(url.to_string(), "https://xn--bcher-kva.example/x?y");
        assert_eq!(url.as_url().port_or_known_default(), Some(443));
        assert_eq!(
            format!("{url:?}"),
            "NormalizedUrl(\"https://xn--bcher-kva.example/x?y\")"
        );

        let json = serde_json::to_string(&url).unwrap();
        assert_eq!(json, "\"https://xn--bcher-kva.example/x?y\"");
        let back: NormalizedUrl =
            serde_json::from_str("\"HTTPS://Bücher.Example:443/x?y#z\"").unwrap();
        assert_eq!(back, url);

        let bad = serde_json::from_str::<NormalizedUrl>("\"ftp://example.com/\"").unwrap_err();
        assert!(
            bad.to_string()
                .contains("scheme \"ftp\" is not http or https"),
            "{bad}"
        );
    }

    #[test]
    fn ordering_and_equality_follow_the_normal_form() {
        let a = NormalizedUrl::parse("http://A.example/").unwrap();
        let b = NormalizedUrl::parse("http://a.example:80/#x").unwrap();
        let c = NormalizedUrl::parse("http://b.example/").unwrap();
        assert_eq!(a, b);
        assert!(a < c);
        let set: std::collections::HashSet<_> = [a, b, c].into_iter().collect();
        assert_eq!(set.len(), 2);
    }

    fn scheme() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("http"),
            Just("https"),
            Just("HTTP"),
            Just("hTTpS"),
            Just("Http")
        ]
        .prop_map(str::to_owned)
    }

    fn host() -> impl Strategy<Value = String> {
        let label = prop_oneof![
            "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?",
            Just("Bücher".to_owned()),
            Just("MÜNCHEN".to_owned()),
            Just("例え".to_owned()),
            Just("ελληνικά".to_owned()),
            Just("xn--bcher-kva".to_owned()),
            Just("%41b".to_owned()),
        ];
        prop_oneof![
            4 => proptest::collection::vec(label, 1..4).prop_map(|labels| labels.join(".")),
            1 => (0u8..=255, 0u8..=255, 0u8..=255, 0u8..=255)
                .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
            1 => Just("[::1]".to_owned()),
            1 => Just("[2001:DB8:0:0::AB]".to_owned()),
            1 => Just("0x7F.1".to_owned()),
        ]
    }

    fn port() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(":".to_owned()),
            Just(":80".to_owned()),
            Just(":443".to_owned()),
            (0u32..70_000).prop_map(|p| format!(":{p}")),
        ]
    }

    /// Path, query and fragment text with the characters that encoders
    /// disagree about: escapes, dot segments, backslashes, quotes, non-ASCII.
    fn odd_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9]{1,4}",
                Just("/".to_owned()),
                Just("%2F".to_owned()),
                Just("%2e".to_owned()),
                Just("%".to_owned()),
                Just("%zz".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("\\".to_owned()),
                Just(" ".to_owned()),
                Just("?".to_owned()),
                Just("&".to_owned()),
                Just("=".to_owned()),
                Just("#".to_owned()),
                "[\"'<>`{}|^\\[\\];:@!$()*+,~-]",
                Just("é".to_owned()),
                Just("€".to_owned()),
                Just("😀".to_owned()),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    fn urlish() -> impl Strategy<Value = String> {
        (
            "[ ]{0,2}",
            scheme(),
            host(),
            port(),
            odd_text(),
            proptest::option::of(odd_text()),
            proptest::option::of(odd_text()),
            "[ ]{0,2}",
        )
            .prop_map(|(lead, scheme, host, port, path, query, fragment, trail)| {
                let mut s = format!("{lead}{scheme}://{host}{port}/{path}");
                if let Some(q) = query {
                    s.push('?');
                    s.push_str(&q);
                }
                if let Some(f) = fragment {
                    s.push('#');
                    s.push_str(&f);
                }
                s.push_str(&trail);
                s
            })
    }

    fn check_idempotent(input: &str) -> Result<(), TestCaseError> {
        if let Ok(once) = NormalizedUrl::parse(input) {
            let twice = NormalizedUrl::parse(once.as_str());
            prop_assert_eq!(twice.as_ref(), Ok(&once), "input {:?}", input);
            prop_assert!(!once.as_str().contains('#'));
            prop_assert!(
                once.as_str().starts_with("http://") || once.as_str().starts_with("https://")
            );
            prop_assert_eq!(once.host(), once.host().to_ascii_lowercase());
            prop_assert!(once.host().is_ascii());
        }
        Ok(())
    }

    /// The idempotence property says nothing about rejected inputs: make sure
    /// the generator produces mostly accepted ones.
    #[test]
    fn the_generator_mostly_makes_valid_urls() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;

        let mut runner = TestRunner::deterministic();
        let strategy = urlish();
        let accepted = (0..1000)
            .filter(|_| {
                let input = strategy.new_tree(&mut runner).unwrap().current();
                NormalizedUrl::parse(&input).is_ok()
            })
            .count();
        assert!(
            accepted > 500,
            "only {accepted} of 1000 generated URLs parse"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn normalising_is_idempotent(input in urlish()) {
            check_idempotent(&input)?;
        }

        #[test]
        fn normalising_arbitrary_text_is_idempotent(input in ".{0,60}") {
            check_idempotent(&input)?;
        }

        #[test]
        fn plain_urls_are_accepted(
            scheme in scheme(),
            host in "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){0,3}",
            path in "(/[A-Za-z0-9._~-]{1,8}){0,4}",
        ) {
            let url = NormalizedUrl::parse(&format!("{scheme}://{host}{path}"));
            prop_assert!(url.is_ok(), "{:?}", url);
            let url = url.unwrap();
            prop_assert_eq!(url.host(), host.as_str());
        }
    }

    #[test]
    fn masking_hides_passwords_and_secret_parameters_only() {
        let cases = [
            (
                "postgres://tdmon:s3cret@db.example:5432/tdmon",
                "postgres://tdmon:***@db.example:5432/tdmon",
            ),
            (
                "postgres://u@127.0.0.1/test?sslmode=disable&password=s3cret&application_name=x",
                "postgres://u@127.0.0.1/test?sslmode=disable&password=***&application_name=x",
            ),
            (
                "postgres:///db?Password=s3cret#f",
                "postgres:///db?Password=***#f",
            ),
            ("amqp://guest:s3cret@h/%2f", "amqp://guest:***@h/%2f"),
            ("postgres://u:@h/db", "postgres://u:@h/db"),
            (
                "postgres://tdmon@localhost/test",
                "postgres://tdmon@localhost/test",
            ),
            ("sqlite://data/tdmon.db", "sqlite://data/tdmon.db"),
            ("http://a.example/x@y:z", "http://a.example/x@y:z"),
            ("plain text", "plain text"),
            // Unparsable: the user information runs to the last '@'.
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa ss@[bad/x", "postgres://u:***@[bad/x"),
            ("x postgres://u:s3cret@h/db", "x postgres://u:***@h/db"),
            ("?token=s3cret&a=1", "?token=***&a=1"),
        ];
        for (value, masked) in cases {
            assert_eq!(mask_url(value), masked, "{value}");
        }
        assert!(matches!(mask_url("sqlite://tdmon.db"), Cow::Borrowed(_)));
    }
}

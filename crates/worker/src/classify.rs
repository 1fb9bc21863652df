//! Pure decisions about what a response means: the content's kind and
//! fingerprint, the [`Outcome`] of a final response, and whether a redirect
//! points at the same resource (followed) or at another one (offline).
//!
//! A fingerprint is `<kind>` or, when a body prefix was read,
//! `<kind>:<16 hex digits of the prefix's SHA-256>`; the body itself is never
//! kept.

use std::fmt;

use sha2::{Digest, Sha256};
use tdmon_core::Outcome;
use url::Url;

/// What kind of content a response carries, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentKind {
    Image,
    Video,
    Audio,
    /// PDF, office documents, e-books.
    Document,
    /// zip, rar, 7z, tar, gzip.
    Archive,
    Html,
    /// Other text: plain, css, csv, ...
    Text,
    Json,
    Xml,
    /// application/octet-stream and other binary types.
    Binary,
    /// No Content-Type, or one that does not parse.
    Unknown,
}

impl ContentKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentKind::Image => "image",
            ContentKind::Video => "video",
            ContentKind::Audio => "audio",
            ContentKind::Document => "document",
            ContentKind::Archive => "archive",
            ContentKind::Html => "html",
            ContentKind::Text => "text",
            ContentKind::Json => "json",
            ContentKind::Xml => "xml",
            ContentKind::Binary => "binary",
            ContentKind::Unknown => "unknown",
        }
    }

    fn from_name(name: &str) -> Option<ContentKind> {
        use ContentKind::*;
        [
            Image, Video, Audio, Document, Archive, Html, Text, Json, Xml, Binary, Unknown,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// A file (picture, film, document, archive) rather than a page: when such
    /// a URL answers with an HTML page, the content was replaced.
    pub const fn is_file(self) -> bool {
        matches!(
            self,
            ContentKind::Image
                | ContentKind::Video
                | ContentKind::Audio
                | ContentKind::Document
                | ContentKind::Archive
        )
    }

    /// The kind a Content-Type header value names.
    pub fn from_content_type(content_type: Option<&str>) -> ContentKind {
        let Some(value) = content_type else {
            return ContentKind::Unknown;
        };
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((top, sub)) = essence.split_once('/') else {
            return ContentKind::Unknown;
        };
        match (top, sub) {
            ("image", _) => ContentKind::Image,
            ("video", _) => ContentKind::Video,
            ("audio", _) => ContentKind::Audio,
            ("text", "html") | ("application", "xhtml+xml") => ContentKind::Html,
            ("text", "xml") => ContentKind::Xml,
            ("text", _) => ContentKind::Text,
            ("application", "json") => ContentKind::Json,
            ("application", s) if s.ends_with("+json") => ContentKind::Json,
            ("application", "xml") => ContentKind::Xml,
            ("application", s) if s.ends_with("+xml") => ContentKind::Xml,
            ("application", "pdf" | "msword" | "rtf" | "epub+zip" | "postscript") => {
                ContentKind::Document
            }
            ("application", s)
                if s.starts_with("vnd.openxmlformats")
                    || s.starts_with("vnd.ms-")
                    || s.starts_with("vnd.oasis.opendocument") =>
            {
                ContentKind::Document
            }
            (
                "application",
                "zip" | "x-zip-compressed" | "x-rar-compressed" | "vnd.rar" | "x-7z-compressed"
                | "x-tar" | "gzip" | "x-gzip" | "x-bzip2" | "x-xz" | "zstd",
            ) => ContentKind::Archive,
            ("application", _) => ContentKind::Binary,
            _ => ContentKind::Unknown,
        }
    }
}

impl fmt::Display for ContentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fingerprint of a response: its kind, plus a short digest of the body
/// prefix when one was read.
pub fn fingerprint(content_type: Option<&str>, body_prefix: Option<&[u8]>) -> String {
    let kind = ContentKind::from_content_type(content_type);
    match body_prefix {
        Some(prefix) if !prefix.is_empty() => {
            let digest = Sha256::digest(prefix);
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("{kind}:{hex}")
        }
        _ => kind.to_string(),
    }
}

/// The kind recorded in a fingerprint, if it names one.
pub fn fingerprint_kind(fingerprint: &str) -> Option<ContentKind> {
    ContentKind::from_name(fingerprint.split(':').next().unwrap_or(""))
}

/// The outcome of a final (non-redirect) response. A 2xx is `Served` unless
/// the baseline was a file (image, video, document, ...) and the URL now
/// answers with an HTML page: then the content was replaced.
pub fn classify_final(status: u16, fingerprint: &str, baseline: Option<&str>) -> Outcome {
    let outcome = Outcome::from_status(status);
    if outcome != Outcome::Served {
        return outcome;
    }
    let now = fingerprint_kind(fingerprint);
    let before = baseline.and_then(fingerprint_kind);
    match (before, now) {
        (Some(before), Some(ContentKind::Html)) if before.is_file() => Outcome::ContentReplaced,
        _ => Outcome::Served,
    }
}

/// What to do with a redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectJudgement {
    /// The target is the same resource (another scheme, `www.` added or
    /// dropped, a trailing slash added or dropped): follow it and judge the
    /// target.
    Follow,
    /// The target is another resource (a home page, another host's landing
    /// page, another path): the content is no longer at its URL.
    Elsewhere,
}

/// Judges a redirect from `from` to `to`: only a change of scheme (and with it
/// of port), of a leading `www.` on the host, or of a trailing slash on the
/// path keeps the resource. Anything else (another path, another query,
/// another host, another port on the same scheme) is elsewhere. A redirect to the very
/// same URL is followed (and bounded by the redirect limit).
pub fn judge_redirect(from: &Url, to: &Url) -> RedirectJudgement {
    let web = |u: &Url| matches!(u.scheme(), "http" | "https");
    if !web(from) || !web(to) {
        return RedirectJudgement::Elsewhere;
    }
    let host = |u: &Url| {
        let h = u
            .host_str()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        match h.strip_prefix("www.") {
            Some(rest) => rest.to_owned(),
            None => h,
        }
    };
    let path = |u: &Url| u.path().trim_end_matches('/').to_owned();
    // A scheme change may bring the other scheme's port with it (a site's
    // HTTP and HTTPS listeners); otherwise the port must stay.
    let same_port =
        from.scheme() != to.scheme() || from.port_or_known_default() == to.port_or_known_default();
    let same = host(from) == host(to)
        && same_port
        && path(from) == path(to)
        && from.query() == to.query()
        && from.username() == to.username();
    if same {
        RedirectJudgement::Follow
    } else {
        RedirectJudgement::Elsewhere
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn content_types_map_to_kinds() {
        use ContentKind::*;
        for (ct, kind) in [
            (Some("image/jpeg"), Image),
            (Some("IMAGE/PNG; charset=binary"), Image),
            (Some("video/mp4"), Video),
            (Some("text/html; charset=utf-8"), Html),
            (Some("application/xhtml+xml"), Html),
            (Some("text/plain"), Text),
            (Some("application/pdf"), Document),
            (
                Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
                Document,
            ),
            (Some("application/zip"), Archive),
            (Some("application/json"), Json),
            (Some("application/ld+json"), Json),
            (Some("application/octet-stream"), Binary),
            (Some("garbage"), Unknown),
            (None, Unknown),
        ] {
            assert_eq!(ContentKind::from_content_type(ct), kind, "{ct:?}");
        }
    }

    #[test]
    fn fingerprints_carry_kind_and_prefix_digest() {
        assert_eq!(fingerprint(Some("image/png"), None), "image");
        assert_eq!(fingerprint(Some("image/png"), Some(b"")), "image");
        let a = fingerprint(Some("image/png"), Some(b"\x89PNG one"));
        let b = fingerprint(Some("image/png"), Some(b"\x89PNG two"));
        assert!(
            a.starts_with("image:") && a.len() == "image:".len() + 16,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(fingerprint_kind(&a), Some(ContentKind::Image));
        assert_eq!(fingerprint_kind("html"), Some(ContentKind::Html));
        assert_eq!(fingerprint_kind("nonsense"), None);
    }

    #[test]
    fn statuses_classify_without_a_baseline() {
        assert_eq!(classify_final(200, "html", None), Outcome::Served);
        assert_eq!(classify_final(206, "image", None), Outcome::Served);
        assert_eq!(classify_final(404, "html", None), Outcome::HttpNotFound);
        assert_eq!(classify_final(410, "unknown", None), Outcome::HttpGone);
        assert_eq!(classify_final(451, "html", None), Outcome::HttpLegalReasons);
        assert_eq!(classify_final(403, "html", None), Outcome::HttpForbidden);
        assert_eq!(classify_final(429, "html", None), Outcome::HttpRateLimited);
        assert_eq!(classify_final(503, "html", None), Outcome::HttpServerError);
    }

    #[test]
    fn a_file_turned_page_is_content_replaced() {
        for before in ["image", "video:0123456789abcdef", "document", "archive"] {
            assert_eq!(
                classify_final(200, "html:fedcba9876543210", Some(before)),
                Outcome::ContentReplaced,
                "{before}"
            );
        }
        // The same kind, or a page that stays a page, is still served.
        assert_eq!(
            classify_final(200, "image:00", Some("image:11")),
            Outcome::Served
        );
        assert_eq!(classify_final(200, "html", Some("html")), Outcome::Served);
        // A baseline without a known kind decides nothing.
        assert_eq!(
            classify_final(200, "html", Some("unknown")),
            Outcome::Served
        );
        assert_eq!(classify_final(200, "html", Some("???")), Outcome::Served);
        // Non-2xx keeps its status class whatever the baseline.
        assert_eq!(
            classify_final(404, "html", Some("image")),
            Outcome::HttpNotFound
        );
    }

    #[test]
    fn cosmetic_redirects_are_followed() {
        use RedirectJudgement::*;
        for (from, to) in [
            ("http://h.test/a.jpg", "https://h.test/a.jpg"),
            ("https://h.test/a.jpg", "http://h.test/a.jpg"),
            ("http://h.test/a.jpg", "http://www.h.test/a.jpg"),
            ("http://www.h.test/a.jpg", "https://h.test/a.jpg"),
            ("http://h.test/dir", "http://h.test/dir/"),
            ("http://h.test/dir/", "http://h.test/dir"),
            ("http://h.test/a?x=1", "https://www.h.test/a?x=1"),
            ("http://H.test/a", "http://h.test/a"),
            ("http://h.test:80/a", "https://h.test:443/a"),
            ("http://h.test:8080/a", "https://h.test:8443/a"),
        ] {
            assert_eq!(
                judge_redirect(&url(from), &url(to)),
                Follow,
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn redirects_to_other_resources_are_elsewhere() {
        use RedirectJudgement::*;
        for (from, to) in [
            ("http://h.test/a.jpg", "http://h.test/"),
            ("http://h.test/a.jpg", "http://h.test/b.jpg"),
            ("http://h.test/a.jpg", "http://other.test/a.jpg"),
            ("http://h.test/a.jpg", "http://other.test/"),
            ("http://h.test/a.jpg", "http://h.test/a.jpg?removed=1"),
            ("http://h.test/a.jpg", "http://h.test:8080/a.jpg"),
            ("http://h.test/a.jpg", "http://cdn.h.test/a.jpg"),
            ("http://h.test/A.jpg", "http://h.test/a.jpg"),
            ("http://h.test/a.jpg", "ftp://h.test/a.jpg"),
            ("http://www2.h.test/a", "http://h.test/a"),
        ] {
            assert_eq!(
                judge_redirect(&url(from), &url(to)),
                Elsewhere,
                "{from} -> {to}"
            );
        }
    }
}

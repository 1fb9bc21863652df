//! Small text helpers shared by the renderings.

use std::fmt::Display;

/// Seconds as a short human duration: `45s`, `12m30s`, `5h12m`, `3d4h`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "-".to_owned();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let s = seconds.abs();
    let whole = s.floor() as u64;
    let text = match whole {
        0..60 if s.fract() > 0.0 && s < 10.0 => format!("{s:.1}s"),
        0..60 => format!("{whole}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..86_400 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3600),
    };
    format!("{sign}{text}")
}

/// A value or `-`.
pub fn optional(value: Option<impl Display>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A share as a percentage with one decimal, or `-`.
pub fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(0.25), "0.2s");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(750.0), "12m30s");
        assert_eq!(duration(5.0 * 3600.0 + 720.0), "5h12m");
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3d04h");
        assert_eq!(duration(-90.0), "-1m30s");
        assert_eq!(percent(Some(0.5)), "50.0%");
        assert_eq!(percent(None), "-");
    }
}

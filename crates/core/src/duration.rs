//! Durations as people write them ("15m", "24h", "7d"), for serde.
//!
//! Use as `#[serde(with = "tdmon_core::duration")]` on a `std::time::Duration`
//! field, or [`list`] on a `Vec<Duration>`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses "15m", "1h 30m", "7d"; a bare number is rejected so that a unit is
/// never guessed.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Formats compactly, in units that [`parse`] reads back exactly: days from
/// three days up ("7d", "6d23h45m"), else hours ("24h", "23h45m"), minutes,
/// seconds; each smaller unit only when it is not zero. Fractions of a second
/// are written as humantime writes them.
pub fn format(duration: Duration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    if duration.subsec_nanos() != 0 {
        return humantime::format_duration(duration)
            .to_string()
            .replace(' ', "");
    }
    let mut rest = duration.as_secs();
    if rest == 0 {
        return "0s".to_owned();
    }
    let units: &[(u64, &str)] = if rest >= 3 * DAY {
        &[(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (1, "s")]
    } else {
        &[(HOUR, "h"), (MINUTE, "m"), (1, "s")]
    };
    let mut text = String::new();
    for &(size, unit) in units {
        if rest >= size {
            text.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    text
}

pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*duration))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same for a list of durations.
pub mod list {
    use super::*;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: Serializer>(durations: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(durations.len()))?;
        for duration in durations {
            seq.serialize_element(&format(*duration))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| parse(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_bare_numbers() {
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse(" 1h 30m "), Ok(Duration::from_secs(5_400)));
        assert!(parse("15").is_err());
        assert!(parse("soon").is_err());
    }

    #[test]
    fn format_round_trips() {
        for secs in [0, 1, 59, 900, 86_400, 90 * 86_400 + 3_600] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d));
        }
        let d = Duration::from_millis(1_500);
        assert_eq!(parse(&format(d)), Ok(d));
        let named: Vec<String> = [900, 86_400, 172_800, 604_800, 85_500, 604_800 - 900, 90]
            .map(|s| format(Duration::from_secs(s)))
            .to_vec();
        assert_eq!(
            named,
            ["15m", "24h", "48h", "7d", "23h45m", "6d23h45m", "1m30s"]
        );
        for text in &named {
            assert_eq!(format(parse(text).unwrap()), *text, "round trip");
        }
    }
}

//! UTC timestamps with millisecond precision, written as RFC 3339.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AuditError;

/// Milliseconds from the Unix epoch to 0000-01-01T00:00:00.000Z.
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// Milliseconds from the Unix epoch to 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// An instant in UTC with millisecond precision, between the years 0000 and 9999.
///
/// Written as RFC 3339 with exactly three fractional digits and a `Z`
/// (`2026-11-26T10:00:00.123Z`), so that the text form sorts like the instant.
/// Parsing accepts any RFC 3339 date-time (offset `Z` or `±hh:mm`, any number of fractional
/// digits, truncated to milliseconds) and also a bare date (`2026-11-26`, midnight UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// The instant `millis` milliseconds after the Unix epoch, clamped to the years 0000-9999.
    pub fn from_unix_millis(millis: i64) -> Self {
        Self(millis.clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis()).map(|m| -m).unwrap_or(i64::MIN),
        };
        Self::from_unix_millis(millis)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let in_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
        let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
        if !(0..=9999).contains(&year) {
            return write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z");
        }
        // Two of these per audit record: digits by hand rather than seven padded formats.
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut value: i64| {
            for slot in text[at..at + width].iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, hour);
        put(14, 2, minute);
        put(17, 2, second);
        put(20, 3, milli);
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A cursor over the bytes of a timestamp being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, count: usize) -> Option<i64> {
        let slice = self.bytes.get(self.at..self.at + count)?;
        let mut value = 0i64;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(b - b'0');
        }
        self.at += count;
        Some(value)
    }

    fn byte(&mut self, accept: &[u8]) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        if accept.contains(&b) {
            self.at += 1;
            Some(b)
        } else {
            None
        }
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

fn parse(text: &str) -> Option<Timestamp> {
    let mut c = Cursor { bytes: text.as_bytes(), at: 0 };
    let year = c.digits(4)?;
    c.byte(b"-")?;
    let month = c.digits(2)?;
    c.byte(b"-")?;
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let date_millis = days_from_civil(year, month, day) * 86_400_000;
    if c.done() {
        return Some(Timestamp::from_unix_millis(date_millis));
    }
    c.byte(b"Tt ")?;
    let hour = c.digits(2)?;
    c.byte(b":")?;
    let minute = c.digits(2)?;
    c.byte(b":")?;
    let second = c.digits(2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut milli = 0;
    if c.byte(b".").is_some() {
        let start = c.at;
        let mut scale = 100;
        while let Some(d) = c.digits(1) {
            milli += d * scale;
            scale /= 10;
        }
        if c.at == start {
            return None;
        }
    }
    let offset_minutes = match c.byte(b"Zz+-")? {
        b'Z' | b'z' => 0,
        sign => {
            let h = c.digits(2)?;
            c.byte(b":")?;
            let m = c.digits(2)?;
            if h > 23 || m > 59 {
                return None;
            }
            if sign == b'-' { -(h * 60 + m) } else { h * 60 + m }
        }
    };
    if !c.done() {
        return None;
    }
    let local = date_millis + ((hour * 60 + minute) * 60 + second) * 1000 + milli;
    let utc = local - offset_minutes * 60_000;
    (MIN_MILLIS..=MAX_MILLIS).contains(&utc).then_some(Timestamp(utc))
}

impl FromStr for Timestamp {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, AuditError> {
        parse(text).ok_or_else(|| {
            AuditError::InvalidFilter(format!(
                "{text:?} is not an RFC 3339 time (e.g. 2026-11-26T10:00:00Z) or date (2026-11-26)"
            ))
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        let t: Timestamp = "2026-11-26T10:00:00.123Z".parse().unwrap();
        assert_eq!(t.unix_millis(), 1_795_687_200_123);
        assert_eq!(t.to_string(), "2026-11-26T10:00:00.123Z");
        assert_eq!(Timestamp::from_unix_millis(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_unix_millis(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!("2024-02-29".parse::<Timestamp>().unwrap().to_string(), "2024-02-29T00:00:00.000Z");
        assert_eq!(
            "2026-11-26T12:30:00.5+02:30".parse::<Timestamp>().unwrap().to_string(),
            "2026-11-26T10:00:00.500Z"
        );
        assert_eq!(Timestamp::from_unix_millis(i64::MAX).to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::from_unix_millis(i64::MIN).to_string(), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2026-13-01",
            "2023-02-29",
            "2026-11-26T24:00:00Z",
            "2026-11-26T10:00:00",
            "2026-11-26T10:00:00.Z",
            "2026-11-26T10:00:00Zjunk",
            "26-11-26",
            "２０２６-11-26",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(ms in MIN_MILLIS..=MAX_MILLIS) {
            let t = Timestamp::from_unix_millis(ms);
            let text = t.to_string();
            prop_assert_eq!(text.len(), 24);
            let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
            let (y, mo, d) = civil_from_days(days);
            let reference = format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                in_day / 3_600_000,
                in_day / 60_000 % 60,
                in_day / 1000 % 60,
                in_day % 1000
            );
            prop_assert_eq!(&text, &reference);
            prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        }

        #[test]
        fn text_order_is_time_order(a in MIN_MILLIS..=MAX_MILLIS, b in MIN_MILLIS..=MAX_MILLIS) {
            let (ta, tb) = (Timestamp::from_unix_millis(a), Timestamp::from_unix_millis(b));
            prop_assert_eq!(ta.cmp(&tb), ta.to_string().cmp(&tb.to_string()));
        }
    }
}

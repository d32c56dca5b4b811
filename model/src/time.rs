//! Event time: nanoseconds since the Unix epoch, RFC 3339 on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An absolute point in time, in nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_unix_nanos(n: i64) -> Self {
        Timestamp(n)
    }
    pub const fn from_unix_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1_000_000_000))
    }
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_nanos().min(i64::MAX as u128) as i64),
            Err(e) => Timestamp(-(e.duration().as_nanos().min(i64::MAX as u128) as i64)),
        }
    }
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_nanos(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(self.0.unsigned_abs())
        }
    }
    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(d.as_nanos().min(i64::MAX as u128) as i64),
        )
    }
    /// `self - d`, saturating.
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(d.as_nanos().min(i64::MAX as u128) as i64),
        )
    }
    /// The absolute distance between two times.
    pub fn abs_diff(self, other: Timestamp) -> Duration {
        Duration::from_nanos(self.0.abs_diff(other.0))
    }
    /// Parses RFC 3339 (`2026-11-25T14:31:06.123Z`).
    pub fn parse_rfc3339(s: &str) -> Result<Self, humantime::TimestampError> {
        humantime::parse_rfc3339_weak(s).map(Timestamp::from_system_time)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with millisecond precision, the way operators read it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            return write!(f, "1970-01-01T00:00:00Z");
        }
        if self.0 % 1_000_000 == 0 {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_millis(self.to_system_time())
            )
        } else {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_nanos(self.to_system_time())
            )
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid RFC 3339 time {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_rfc3339() {
        let t = Timestamp::from_unix_secs(1_795_617_015);
        assert_eq!(t.to_string(), "2026-11-25T14:30:15.000Z");
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(n in 0i64..4_000_000_000_000_000_000) {
            let t = Timestamp(n);
            let back = Timestamp::parse_rfc3339(&t.to_string()).unwrap();
            prop_assert_eq!(back, t);
        }
    }
}

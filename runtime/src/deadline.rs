//! A call's deadline, as gRPC means it: one instant that bounds the whole call — waiting for a
//! token, connecting, the response headers, the response body or stream — sent to the server
//! as `grpc-timeout`, and shared by a retry, which gets only what is left of it.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Longer than any call may reasonably take (Cloud Run's own limit is an hour); anything
/// beyond is treated as no deadline, so `Duration::MAX` never overflows an `Instant`.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Longer than anything needs to wait: settings are cut to it, so that no timer arithmetic can
/// overflow (`Duration::MAX` is a fine way to say "forever").
pub(crate) const A_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// `by` after `from`, or a century later when that cannot be represented.
pub(crate) fn later(from: Instant, by: Duration) -> Instant {
    from.checked_add(by).unwrap_or_else(|| from + FOREVER)
}

/// When a call must be over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    /// What the caller asked for, for messages ("the deadline of 2s").
    total: Duration,
}

impl Deadline {
    /// A deadline `after` from `now`, or none when `after` is beyond any reasonable call.
    pub(crate) fn after(now: Instant, after: Duration) -> Option<Self> {
        (after < FOREVER).then(|| Deadline {
            at: now + after,
            total: after,
        })
    }

    /// The deadline of a request: its `grpc-timeout`, or the channel's `default` when that is
    /// sooner; the header is rewritten to say so, since the server should know it too.
    pub(crate) fn of_request(
        headers: &mut HeaderMap,
        default: Option<Duration>,
        now: Instant,
    ) -> Option<Self> {
        let asked = parse(headers);
        let timeout = match (asked, default) {
            (Some(asked), Some(default)) => asked.min(default),
            (asked, default) => asked.or(default)?,
        };
        let deadline = Deadline::after(now, timeout)?;
        if asked != Some(timeout) {
            headers.insert(GRPC_TIMEOUT, encode(timeout));
        }
        Some(deadline)
    }

    /// The instant the call must be over by.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// The whole timeout the caller asked for.
    pub(crate) fn total(&self) -> Duration {
        self.total
    }

    /// What is left of it at `now` (zero once passed).
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// Rewrites `grpc-timeout` to what is left: a retry tells the server the truth.
    pub(crate) fn refresh_header(&self, headers: &mut HeaderMap, now: Instant) {
        headers.insert(GRPC_TIMEOUT, encode(self.remaining(now)));
    }
}

/// Reads `grpc-timeout` (1 to 8 digits and a unit: H, M, S, m, u, n).
pub(crate) fn parse(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount * 3600),
        b"M" => Duration::from_secs(amount * 60),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Writes `timeout` in the finest unit that fits in 8 digits, rounding up so the server never
/// gives up before we do.
pub(crate) fn encode(timeout: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (amount, unit) = units
        .iter()
        .map(|&(per, unit)| (nanos.div_ceil(per), unit))
        .find(|&(amount, _)| amount <= MAX)
        .unwrap_or((MAX, 'H'));
    HeaderValue::try_from(format!("{amount}{unit}"))
        .unwrap_or_else(|_| HeaderValue::from_static("99999999H"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(value));
        parse(&headers)
    }

    #[test]
    fn reads_grpc_timeouts() {
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("3S"), Some(Duration::from_secs(3)));
        assert_eq!(timeout_of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout_of("100u"), Some(Duration::from_micros(100)));
        assert_eq!(timeout_of("m"), None);
        assert_eq!(timeout_of("123456789S"), None);
        assert_eq!(timeout_of("12x"), None);
        assert_eq!(parse(&HeaderMap::new()), None);
    }

    #[test]
    fn writes_what_it_reads() {
        for timeout in [
            Duration::from_nanos(1),
            Duration::from_millis(250),
            Duration::from_secs(30),
            Duration::from_secs(3 * 3600),
            Duration::from_nanos(123_456_789_012),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_TIMEOUT, encode(timeout));
            let read = parse(&headers).unwrap();
            assert!(read >= timeout, "{timeout:?} came back as {read:?}");
            assert!(
                read - timeout <= timeout / 10_000 + Duration::from_nanos(1),
                "{timeout:?} came back as {read:?}"
            );
        }
        assert_eq!(encode(Duration::MAX), "99999999H");
    }

    #[test]
    fn the_sooner_of_header_and_default_wins_and_is_sent() {
        let now = Instant::now();
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("5S"));
        let deadline = Deadline::of_request(&mut headers, Some(Duration::from_secs(2)), now);
        assert_eq!(deadline.unwrap().total(), Duration::from_secs(2));
        assert_eq!(headers[GRPC_TIMEOUT], "2000000u");

        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        let deadline = Deadline::of_request(&mut headers, Some(Duration::from_secs(2)), now);
        assert_eq!(deadline.unwrap().total(), Duration::from_secs(1));
        assert_eq!(headers[GRPC_TIMEOUT], "1S");

        let mut headers = HeaderMap::new();
        assert!(Deadline::of_request(&mut headers, None, now).is_none());
        assert!(Deadline::of_request(&mut headers, Some(Duration::MAX), now).is_none());
        assert!(headers.is_empty());
    }
}

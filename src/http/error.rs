//! What can go wrong with an outgoing request, and whether trying again can help: the error type
//! every caller of the HTTP client matches on, how reqwest's failures map to it, and a server's
//! `Retry-After`.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

/// Longest `Retry-After` taken from a server: one asking for more waits as long as any retry.
pub const MAX_RETRY_AFTER: Duration = crate::backoff::MAX_RETRY_DELAY;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {0}")]
    InvalidUrl(String),
    /// The SSRF guard refused an address the URL's host is or resolves to.
    #[error("refused {url}: address {address} is {reason}")]
    Blocked {
        url: String,
        address: IpAddr,
        reason: String,
    },
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// Could not connect, or the connection broke before the response was complete.
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A response outside 2xx, from `client::check_status`.
    #[error("HTTP {status}: {body_excerpt}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body_excerpt: String,
    },
    /// Anything else, such as a header name that is not one; permanent.
    #[error("{0}")]
    Other(String),
}

impl HttpError {
    /// Whether the same request may succeed later: network trouble, 408, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Dns(_) | HttpError::Connect(_) | HttpError::Timeout(_) => true,
            HttpError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    /// How long the server asked to be left alone, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Maps a reqwest failure for `url`. The resolver's own errors (blocked, lookup failed) come back
/// wrapped by reqwest and hyper, and are found again in the chain of sources.
pub(super) fn transport_error(error: &reqwest::Error, url: &Url) -> HttpError {
    match sources(error).find_map(|source| source.downcast_ref::<HttpError>()) {
        Some(HttpError::Blocked { address, reason, .. }) => HttpError::Blocked {
            url: url.to_string(),
            address: *address,
            reason: reason.clone(),
        },
        Some(resolver_error) => resolver_error.clone(),
        None if error.is_builder() => HttpError::Other(format!("invalid request: {}", error_chain(error))),
        None => HttpError::Connect(error_chain(error)),
    }
}

fn sources<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&error| error.source())
}

/// reqwest's message names only the URL; the cause (refused, reset, bad certificate) is in its sources.
pub(super) fn error_chain(error: &reqwest::Error) -> String {
    sources(error).map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

/// A `Retry-After` value as a wait from `now`: delta-seconds, or an HTTP date in IMF-fixdate or
/// another RFC 2822 form (not the obsolete RFC 850 and asctime forms). A date in the past means no
/// wait; any wait over [`MAX_RETRY_AFTER`] is cut to it. `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Too many digits for a u64 still means a long time.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        // A date before 1970 is as past as 1970.
        let date = UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(date.timestamp()).unwrap_or(0)))?;
        date.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn retry_after_reads_seconds_and_http_dates_up_to_a_day() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("3", now), Some(3 * SECOND));
        assert_eq!(parse_retry_after(" 120 ", now), Some(120 * SECOND));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(60 * SECOND)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Dec 1994 00:00:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("86401", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(MAX_RETRY_AFTER));
        for garbage in [
            "",
            "soon",
            "-5",
            "1.5",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "Mon, 06 Nov 1994 08:50:37 GMT",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn transient_failures_are_retryable_and_the_rest_permanent() {
        let status = |status| HttpError::Status {
            status,
            retry_after: None,
            body_excerpt: String::new(),
        };
        let retryable = [
            HttpError::Timeout(SECOND),
            HttpError::Connect("reset".into()),
            HttpError::Dns("no answer".into()),
            status(408),
            status(429),
            status(500),
            status(503),
            status(599),
        ];
        let blocked = HttpError::Blocked {
            url: "http://10.0.0.1/".into(),
            address: [10, 0, 0, 1].into(),
            reason: "private".into(),
        };
        let permanent = [
            HttpError::InvalidUrl("ftp://x".into()),
            blocked,
            HttpError::TooManyRedirects(5),
            HttpError::BodyTooLarge(1 << 20),
            HttpError::Other("bad header".into()),
            status(302),
            status(400),
            status(401),
            status(403),
            status(404),
            status(410),
        ];
        for error in retryable {
            assert!(error.is_retryable(), "{error:?}");
        }
        for error in permanent {
            assert!(!error.is_retryable(), "{error:?}");
        }
        let asked = HttpError::Status {
            status: 503,
            retry_after: Some(3 * SECOND),
            body_excerpt: String::new(),
        };
        assert_eq!(asked.retry_after(), Some(3 * SECOND));
        assert_eq!(HttpError::Timeout(SECOND).retry_after(), None);
    }
}

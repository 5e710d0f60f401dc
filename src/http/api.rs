//! The gate of the durable requests: `queue_http_request`, behind `http_get`, `http_post` and
//! `http_delete` (pageperfect's and pg_net's names). It knows the caller, so it decides what the
//! request may reach (the SSRF guard for every role but superusers, unless
//! `pageperfect.http_allow_private` is on) and how long it may take, checks the URL with pg_net's
//! messages, then stores it as the owner (roles cannot write `http_requests`). Also pg_net's two
//! URL helpers, as plain functions with unit tests.

use super::guard::blocked_literal_host;
use crate::{as_owner, config, current_user, invalid_parameter};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pgrx::prelude::*;
use pgrx::JsonB;
use url::Url;

/// Why pg_net (libcurl's URL parser) refuses `url`, in its words; `None` when it is an absolute
/// http(s) URL with a host.
pub fn url_problem(url: &str) -> Option<&'static str> {
    match Url::parse(url) {
        Err(url::ParseError::RelativeUrlWithoutBase) => Some("Bad scheme"),
        Err(url::ParseError::EmptyHost) => Some("No host part in the URL"),
        Err(url::ParseError::InvalidPort) => Some("Port number was not a decimal number between 0 and 65535"),
        Err(_) => Some("Malformed input to a URL function"),
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => Some("Unsupported URL scheme"),
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => Some("No host part in the URL"),
        Ok(_) => None,
    }
}

/// RFC 3986's unreserved characters stay; everything else is %XX (uppercase), as
/// `curl_easy_escape` encodes (a space is `%20`).
const CURL_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn urlencode(text: &str) -> String {
    utf8_percent_encode(text, CURL_ESCAPED).to_string()
}

/// `url` with each of `params` (already encoded `name=value` pairs; NULLs skipped) added to its
/// query, as pg_net's `_encode_url_with_params_array` builds the URL it sends.
pub fn url_with_params(url: &str, params: &[Option<String>]) -> Result<String, String> {
    let mut parsed = Url::parse(url).map_err(|e| format!("invalid URL \"{url}\": {e}"))?;
    let added: Vec<&str> = params.iter().flatten().map(String::as_str).collect();
    if !added.is_empty() {
        let query = match parsed.query().filter(|q| !q.is_empty()) {
            Some(existing) => format!("{existing}&{}", added.join("&")),
            None => added.join("&"),
        };
        parsed.set_query(Some(&query));
    }
    Ok(parsed.to_string())
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// Queues a request of the caller's; it is sent once the calling transaction commits, and
    /// tried up to `max_attempts` times (1: its first outcome is its answer, as with pg_net).
    #[pg_extern(volatile)]
    fn queue_http_request(
        method: Option<&str>,
        url: Option<&str>,
        params: Option<JsonB>,
        headers: Option<JsonB>,
        body: Option<Vec<u8>>,
        timeout_milliseconds: Option<i32>,
        max_attempts: default!(Option<i32>, 1),
    ) -> Option<i64> {
        crate::refuse_if_read_only("net.http_*()");
        let Some(url) = url else {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                "null value in column \"url\" of relation \"http_request_queue\" violates not-null constraint"
            );
        };
        if let Some(problem) = url_problem(url) {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("invalid URL \"{url}\": {problem}"));
        }
        // A delivery slot is held for as long as the request may take.
        let max_timeout = config::HTTP_MAX_TIMEOUT_MS.get();
        if let Some(asked) = timeout_milliseconds.filter(|ms| *ms > max_timeout) {
            invalid_parameter(format!(
                "timeout_milliseconds must be at most {max_timeout} (pageperfect.http_max_timeout_ms; got {asked})"
            ));
        }
        let guarded = !unsafe { pg_sys::superuser() } && !config::HTTP_ALLOW_PRIVATE.get();
        if let Some(blocked) = Some(url).filter(|_| guarded).and_then(blocked_literal_host) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("URL \"{url}\" is refused: {blocked}"),
                "A superuser can allow such addresses for every role with pageperfect.http_allow_private = on."
            );
        }
        let owner = current_user();
        as_owner(|| {
            Spi::get_one_with_args::<i64>(
                "SELECT pageperfect.store_http_request($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    owner.into(),
                    guarded.into(),
                    method.into(),
                    url.into(),
                    params.into(),
                    headers.into(),
                    body.into(),
                    timeout_milliseconds.into(),
                    max_attempts.into(),
                ],
            )
        })
        .unwrap_or_else(|e| error!("{e}"))
    }

    /// pg_net's `_urlencode_string`: percent-encodes all but RFC 3986's unreserved characters.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn urlencode(text: &str) -> String {
        super::urlencode(text)
    }

    /// pg_net's `_encode_url_with_params_array`.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn url_with_params(url: &str, params_array: Vec<Option<String>>) -> String {
        super::url_with_params(url, &params_array).unwrap_or_else(|e| error!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pg_net_refuses_get_its_words() {
        assert_eq!(url_problem("localhost:6666"), Some("Unsupported URL scheme"));
        assert_eq!(url_problem("/malformed_url"), Some("Bad scheme"));
        assert_eq!(url_problem("not a url"), Some("Bad scheme"));
        assert_eq!(url_problem(""), Some("Bad scheme"));
        assert_eq!(url_problem("http://"), Some("No host part in the URL"));
        assert_eq!(url_problem("mailto:foo@bar"), Some("Unsupported URL scheme"));
        assert_eq!(url_problem("ftp://example.com/x"), Some("Unsupported URL scheme"));
        assert_eq!(url_problem("https://example.com/a?b=1"), None);
        assert_eq!(url_problem("http://[::1]:8888"), None);
    }

    #[test]
    fn encoding_is_curls() {
        assert_eq!(urlencode("hello world"), "hello%20world");
        assert_eq!(urlencode("a&b=c"), "a%26b%3Dc");
        assert_eq!(urlencode("!*'()~-._"), "%21%2A%27%28%29~-._");
        assert_eq!(urlencode("ñ"), "%C3%B1");
    }

    #[test]
    fn params_are_appended_to_the_query() {
        let hello = [Some("hello=world".to_string())];
        assert_eq!(url_with_params("http://h/anything?x=1", &hello).unwrap(), "http://h/anything?x=1&hello=world");
        assert_eq!(url_with_params("http://h/anything?", &hello).unwrap(), "http://h/anything?hello=world");
        assert_eq!(url_with_params("http://localhost:8080", &[]).unwrap(), "http://localhost:8080/");
        assert_eq!(url_with_params("http://h/p", &[None, Some("a=1".into())]).unwrap(), "http://h/p?a=1");
        assert!(url_with_params("nope", &hello).is_err());
    }
}

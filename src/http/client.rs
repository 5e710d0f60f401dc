//! The HTTP client every stage shares: one pooled reqwest client with a timeout on each exchange,
//! a cap on body size, redirects followed by hand, an SSRF guard on every address it connects to,
//! and errors that say whether a retry can help. It runs on the workers' tokio runtime and never
//! calls into Postgres.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use url::{Host, Url};

/// Longest `Retry-After` taken from a server: one asking for more waits as long as any retry.
pub const MAX_RETRY_AFTER: Duration = crate::backoff::MAX_RETRY_DELAY;

/// Characters of an error response's body kept in [`HttpError::Status`].
const BODY_EXCERPT_CHARS: usize = 300;

/// Request headers dropped when a redirect leads to another origin: they carry credentials.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Decides whether the client may connect to an address: `Some(reason)` refuses it.
type AddressPolicy = fn(IpAddr) -> Option<&'static str>;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Sent as `User-Agent` unless a request sets its own.
    pub user_agent: String,
    /// Limit on a whole exchange: lookups, connects, every redirect hop and the body.
    pub timeout: Duration,
    /// Largest body accepted; a larger one fails with [`HttpError::BodyTooLarge`].
    pub max_bytes: usize,
    /// Redirects followed before [`HttpError::TooManyRedirects`]; 0 returns a redirect as the response.
    pub max_redirects: usize,
    /// Lets requests reach loopback, private and link-local addresses (tests, intranet sites).
    pub allow_private: bool,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            user_agent: concat!("pageperfect/", env!("CARGO_PKG_VERSION")).to_string(),
            timeout: Duration::from_secs(30),
            max_bytes: 10 * 1024 * 1024,
            max_redirects: 10,
            allow_private: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
    Head,
}

impl Method {
    fn to_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// Sent as given; `User-Agent` here replaces the configured one.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Replaces [`HttpConfig::timeout`] for this request.
    pub timeout: Option<Duration>,
}

impl Request {
    pub fn get(url: impl Into<String>) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// A POST of `body` as JSON, with `Content-Type: application/json`.
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Request {
        Request {
            method: Method::Post,
            body: Some(body.to_string().into_bytes()),
            ..Request::get(url)
        }
        .header("Content-Type", "application/json")
    }

    /// A POST of an `application/x-www-form-urlencoded` body (OAuth token requests).
    pub fn post_form(url: impl Into<String>, body: String) -> Request {
        Request {
            method: Method::Post,
            body: Some(body.into_bytes()),
            ..Request::get(url)
        }
        .header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// The URL that gave this response, after redirects.
    pub final_url: String,
    /// In the order received; names in lower case, values decoded as UTF-8 with replacements.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// From a `Retry-After` header, whatever the status.
    pub retry_after: Option<Duration>,
    /// From the start of `send` to the end of the body, redirects included.
    pub elapsed: Duration,
}

impl Response {
    /// The body decoded as UTF-8, invalid bytes replaced: other charsets are not transcoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name`, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

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
    /// A response outside 2xx, from [`check_status`].
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

/// A cheap handle (clones share one connection pool) that sends [`Request`]s.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: AddressPolicy,
    timeout: Duration,
    max_bytes: usize,
    max_redirects: usize,
}

impl HttpClient {
    pub fn new(config: HttpConfig) -> Result<HttpClient, HttpError> {
        let policy: AddressPolicy = if config.allow_private { |_| None } else { private_reason };
        HttpClient::with_policy(config, policy)
    }

    /// A client whose guard is `policy`, in place of what `config.allow_private` would choose.
    fn with_policy(config: HttpConfig, policy: AddressPolicy) -> Result<HttpClient, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            // Servers send malformed header lines (a space in a name, a stray line); as libcurl
            // does, such a response is still the response (the bad line is dropped), not an error.
            .http1_ignore_invalid_headers_in_responses(true)
            .http1_allow_spaces_after_header_name_in_responses(true)
            .http1_allow_obsolete_multiline_headers_in_responses(true)
            // A proxy would look names up itself, out of the guard's sight.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .build()
            .map_err(|error| HttpError::Other(format!("cannot build the HTTP client: {}", error_chain(&error))))?;
        Ok(HttpClient {
            client,
            policy,
            timeout: config.timeout,
            max_bytes: config.max_bytes,
            max_redirects: config.max_redirects,
        })
    }

    /// Sends `request` and reads the whole response, following redirects: any redirect of a GET or
    /// HEAD, and for other methods only 307 and 308, which keep method and body (a POST is not turned
    /// into a GET). Every hop passes the SSRF guard. Any status is `Ok`: see [`check_status`].
    pub async fn send(&self, request: Request) -> Result<Response, HttpError> {
        let limit = request.timeout.unwrap_or(self.timeout);
        let started = Instant::now();
        tokio::time::timeout(limit, self.exchange(request, started))
            .await
            .unwrap_or(Err(HttpError::Timeout(limit)))
    }

    async fn exchange(&self, request: Request, started: Instant) -> Result<Response, HttpError> {
        let Request {
            method,
            url,
            mut headers,
            body,
            ..
        } = request;
        let parsed = Url::parse(&url).map_err(|error| HttpError::InvalidUrl(format!("{url:?}: {error}")))?;
        let mut url = self.check_url(parsed)?;
        let mut redirects = 0;
        loop {
            let mut builder = self.client.request(method.to_reqwest(), url.clone());
            for (name, value) in &headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let response = builder.send().await.map_err(|error| transport_error(&error, &url))?;
            let Some(next) = self.redirect_target(method, &url, &response)? else {
                return self.read_response(response, url, started).await;
            };
            if redirects == self.max_redirects {
                return Err(HttpError::TooManyRedirects(self.max_redirects));
            }
            redirects += 1;
            if next.origin() != url.origin() {
                headers.retain(|(name, _)| {
                    !CREDENTIAL_HEADERS
                        .iter()
                        .any(|header| name.eq_ignore_ascii_case(header))
                });
            }
            url = next;
        }
    }

    /// Refuses what this client never fetches: other schemes, no host, or a literal address the
    /// guard blocks. Host names are checked by the resolver, on what they resolve to.
    /// (`blocked_literal_host` makes the same judgement on a URL before it is queued.)
    fn check_url(&self, url: Url) -> Result<Url, HttpError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidUrl(format!("{url}: only http and https are fetched")));
        }
        let address = match url.host() {
            None => return Err(HttpError::InvalidUrl(format!("{url}: no host"))),
            Some(Host::Domain(_)) => return Ok(url),
            Some(Host::Ipv4(address)) => IpAddr::V4(address),
            Some(Host::Ipv6(address)) => IpAddr::V6(address),
        };
        match (self.policy)(address) {
            Some(reason) => Err(HttpError::Blocked {
                url: url.to_string(),
                address,
                reason: reason.to_string(),
            }),
            None => Ok(url),
        }
    }

    /// Where `response` redirects to, if it is a redirect this client follows.
    fn redirect_target(
        &self,
        method: Method,
        url: &Url,
        response: &reqwest::Response,
    ) -> Result<Option<Url>, HttpError> {
        let follows = match response.status().as_u16() {
            301..=303 => matches!(method, Method::Get | Method::Head),
            307 | 308 => true,
            _ => false,
        };
        let location = match response.headers().get(LOCATION) {
            Some(location) if follows && self.max_redirects > 0 => String::from_utf8_lossy(location.as_bytes()),
            _ => return Ok(None),
        };
        let next = url
            .join(&location)
            .map_err(|error| HttpError::InvalidUrl(format!("{location:?} (redirected from {url}): {error}")))?;
        self.check_url(next).map(Some)
    }

    async fn read_response(
        &self,
        mut response: reqwest::Response,
        url: Url,
        started: Instant,
    ) -> Result<Response, HttpError> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        let content_type = header(CONTENT_TYPE.as_str());
        // OpenAI's `retry-after-ms` is the more precise of the two when both come.
        let retry_after = header("retry-after-ms")
            .and_then(|ms| ms.trim().parse::<f64>().ok())
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0).min(MAX_RETRY_AFTER))
            .or_else(|| header(RETRY_AFTER.as_str()).and_then(|value| parse_retry_after(&value, SystemTime::now())));
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let status = response.status().as_u16();
        let body = read_body(&mut response, self.max_bytes, &url).await?;
        Ok(Response {
            status,
            final_url: url.to_string(),
            headers,
            content_type,
            body,
            retry_after,
            elapsed: started.elapsed(),
        })
    }
}

/// Reads the body chunk by chunk and stops as soon as it is known to exceed `max_bytes`.
async fn read_body(response: &mut reqwest::Response, max_bytes: usize, url: &Url) -> Result<Vec<u8>, HttpError> {
    let declared = response.content_length();
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(HttpError::BodyTooLarge(max_bytes));
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(chunk) = response.chunk().await.map_err(|error| transport_error(&error, url))? {
        if chunk.len() > max_bytes - body.len() {
            return Err(HttpError::BodyTooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Maps a reqwest failure for `url`. The resolver's own errors (blocked, lookup failed) come back
/// wrapped by reqwest and hyper, and are found again in the chain of sources.
fn transport_error(error: &reqwest::Error, url: &Url) -> HttpError {
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
fn error_chain(error: &reqwest::Error) -> String {
    sources(error).map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

/// reqwest's resolver for every host name the client connects to, redirect targets included. It
/// refuses a name if any of its addresses is blocked, and gives reqwest exactly the addresses it
/// checked, so nothing can look the name up again between the check and the connect (DNS rebinding).
struct GuardedResolver {
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addresses = resolve_checked(name.as_str(), policy).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host`, if `policy` allows all of them. A `Blocked` error here names the host;
/// [`transport_error`] puts the URL in its place.
async fn resolve_checked(host: &str, policy: AddressPolicy) -> Result<Vec<SocketAddr>, HttpError> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|error| HttpError::Dns(format!("{host}: {error}")))?
        .collect();
    if addresses.is_empty() {
        return Err(HttpError::Dns(format!("{host}: no addresses")));
    }
    for address in &addresses {
        if let Some(reason) = policy(address.ip()) {
            return Err(HttpError::Blocked {
                url: host.to_string(),
                address: address.ip(),
                reason: reason.to_string(),
            });
        }
    }
    Ok(addresses)
}

/// `Ok(response)` for a 2xx status; otherwise [`HttpError::Status`] with the response's
/// `Retry-After` and the first 300 characters of its body.
pub fn check_status(response: Response) -> Result<Response, HttpError> {
    if (200..300).contains(&response.status) {
        return Ok(response);
    }
    Err(HttpError::Status {
        status: response.status,
        retry_after: response.retry_after,
        body_excerpt: response.text().chars().take(BODY_EXCERPT_CHARS).collect(),
    })
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

/// Why the SSRF guard will refuse `url` whatever its name resolves to: its host is a literal
/// address the guard blocks, or `localhost` (and names under it), which resolve to loopback by
/// definition. `None` for anything else, including URLs that do not parse (their own check
/// reports those); names are judged when they are resolved.
pub fn blocked_literal_host(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    match parsed.host()? {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then(|| format!("{name} is a loopback name"))
        }
        Host::Ipv4(address) => private_reason(IpAddr::V4(address)).map(|reason| format!("{address} is a {reason} address")),
        Host::Ipv6(address) => private_reason(IpAddr::V6(address)).map(|reason| format!("{address} is a {reason} address")),
    }
}

/// Whether the SSRF guard refuses `address` unless private addresses are allowed: loopback,
/// private, link-local (cloud metadata), unspecified, shared (CGNAT), broadcast, multicast,
/// documentation and reserved ranges; IPv4 inside IPv6 (mapped, NAT64) is judged as IPv4.
pub fn is_private(address: IpAddr) -> bool {
    private_reason(address).is_some()
}

fn private_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(address) => ipv4_reason(address),
        IpAddr::V6(address) => embedded_ipv4(address).map_or_else(|| ipv6_reason(address), ipv4_reason),
    }
}

fn ipv4_reason(address: Ipv4Addr) -> Option<&'static str> {
    let reason = match address.octets() {
        [255, 255, 255, 255] => "broadcast",
        [0, ..] => "unspecified",
        [127, ..] => "loopback",
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => "private",
        [169, 254, ..] => "link-local",
        [100, 64..=127, ..] => "shared (CGNAT)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [192, 0, 0, _] | [198, 18..=19, ..] | [240..=255, ..] => "reserved",
        [224..=239, ..] => "multicast",
        _ => return None,
    };
    Some(reason)
}

fn ipv6_reason(address: Ipv6Addr) -> Option<&'static str> {
    let reason = match address.segments() {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // IPv4-compatible addresses, deprecated.
        [0, 0, 0, 0, 0, 0, _, _] => "reserved",
        [first, ..] if first & 0xfe00 == 0xfc00 => "private",
        [first, ..] if first & 0xffc0 == 0xfe80 => "link-local",
        // Deprecated, but still routed inside some networks.
        [first, ..] if first & 0xffc0 == 0xfec0 => "site-local",
        // 6to4 and local-use NAT64 carry an IPv4 address that a relay or translator reaches.
        [0x2002, ..] => "6to4",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64",
        [first, ..] if first & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0x0db8, ..] => "documentation",
        _ => return None,
    };
    Some(reason)
}

/// The IPv4 address that an IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d)
/// or NAT64 (64:ff9b::a.b.c.d) address reaches.
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    match address.segments() {
        [0, 0, 0, 0, 0, 0xffff, high, low]
        | [0, 0, 0, 0, 0xffff, 0, high, low]
        | [0x64, 0xff9b, 0, 0, 0, 0, high, low] => {
            Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SECOND: Duration = Duration::from_secs(1);
    const MAX_BYTES: usize = 1024 * 1024;

    fn config(allow_private: bool) -> HttpConfig {
        HttpConfig {
            timeout: 10 * SECOND,
            max_bytes: MAX_BYTES,
            max_redirects: 5,
            allow_private,
            ..HttpConfig::default()
        }
    }

    /// A client that may reach the loopback test servers.
    fn client() -> HttpClient {
        HttpClient::new(config(true)).unwrap()
    }

    /// A request as a test server read it.
    struct Received {
        /// The request line and headers.
        head: String,
        body: Vec<u8>,
    }

    impl Received {
        fn path(&self) -> &str {
            self.head.split(' ').nth(1).unwrap_or_default()
        }
    }

    async fn read_request(stream: &mut TcpStream) -> Received {
        let mut data = Vec::new();
        let mut buffer = [0; 4096];
        let head_end = loop {
            if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
                break end;
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break data.len(),
                Ok(read) => data.extend_from_slice(&buffer[..read]),
            }
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let length = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|n| n.trim().parse())
            })
            .and_then(Result::ok)
            .unwrap_or(0);
        let mut body = data.get(head_end + 4..).unwrap_or_default().to_vec();
        while body.len() < length {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => body.extend_from_slice(&buffer[..read]),
            }
        }
        Received { head, body }
    }

    /// Listens on `bind` and hands each request, with its connection, to `reply`.
    async fn serve_raw<F, Fut>(bind: &str, reply: F) -> SocketAddr
    where
        F: Fn(Received, TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(bind).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let received = read_request(&mut stream).await;
                tokio::spawn(reply(received, stream));
            }
        });
        address
    }

    /// Listens on 127.0.0.1 and answers each request with the raw HTTP text `reply` makes for it.
    async fn serve<F>(reply: F) -> SocketAddr
    where
        F: Fn(&Received) -> String + Send + 'static,
    {
        serve_raw("127.0.0.1:0", move |received, mut stream| {
            let response = reply(&received);
            async move {
                let _ = stream.write_all(response.as_bytes()).await;
            }
        })
        .await
    }

    /// A complete HTTP/1.1 response; `headers` are "Name: value" lines.
    fn http(status: &str, headers: &[&str], body: &str) -> String {
        let mut response = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for header in headers {
            response += &format!("{header}\r\n");
        }
        response + "\r\n" + body
    }

    fn get(server: SocketAddr, path: &str) -> Request {
        Request::get(format!("http://{server}{path}"))
    }

    #[tokio::test]
    async fn a_response_comes_back_with_status_headers_and_body() {
        let server = serve(|_| {
            http(
                "200 OK",
                &["Content-Type: text/html; charset=utf-8", "X-Test: yes"],
                "<p>hi</p>",
            )
        })
        .await;
        let response = client().send(get(server, "/page")).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.final_url, format!("http://{server}/page"));
        assert_eq!(response.text(), "<p>hi</p>");
        assert_eq!(response.content_type.as_deref(), Some("text/html; charset=utf-8"));
        assert_eq!(response.header("X-TEST"), Some("yes"));
        assert_eq!(response.retry_after, None);
    }

    #[tokio::test]
    async fn a_redirect_chain_is_followed_to_the_final_url() {
        let server = serve(|received| match received.path() {
            "/one" => http("301 Moved Permanently", &["Location: /two"], ""),
            "/two" => http("302 Found", &["Location: three?x=1"], ""),
            _ => http("200 OK", &[], "arrived"),
        })
        .await;
        let response = client().send(get(server, "/one")).await.unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "arrived"));
        assert_eq!(response.final_url, format!("http://{server}/three?x=1"));
    }

    #[tokio::test]
    async fn a_redirect_loop_stops_at_the_limit_and_a_limit_of_0_returns_the_redirect() {
        let server = serve(|_| http("302 Found", &["Location: /again"], "")).await;
        let error = client().send(get(server, "/")).await.unwrap_err();
        assert_eq!(error, HttpError::TooManyRedirects(5));
        assert!(!error.is_retryable());

        let unfollowing = HttpClient::new(HttpConfig {
            max_redirects: 0,
            ..config(true)
        })
        .unwrap();
        let response = unfollowing.send(get(server, "/")).await.unwrap();
        assert_eq!((response.status, response.header("location")), (302, Some("/again")));
    }

    #[tokio::test]
    async fn only_307_and_308_redirect_a_post_and_they_keep_its_body() {
        let server = serve(|received| match received.path() {
            "/307" => http("307 Temporary Redirect", &["Location: /echo"], ""),
            "/308" => http("308 Permanent Redirect", &["Location: /echo"], ""),
            "/302" => http("302 Found", &["Location: /echo"], ""),
            _ => {
                let request_line = received.head.lines().next().unwrap_or_default();
                http(
                    "200 OK",
                    &[],
                    &format!("{request_line} {}", String::from_utf8_lossy(&received.body)),
                )
            }
        })
        .await;
        let post = |path| Request::post_json(format!("http://{server}{path}"), &json!({"a": 1}));
        for path in ["/307", "/308"] {
            let response = client().send(post(path)).await.unwrap();
            assert_eq!(response.text(), r#"POST /echo HTTP/1.1 {"a":1}"#);
        }
        assert_eq!(client().send(post("/302")).await.unwrap().status, 302);
    }

    #[tokio::test]
    async fn credentials_follow_a_redirect_only_within_the_origin() {
        let other = serve(|received| http("200 OK", &[], &received.head)).await;
        let server = serve(move |received| match received.path() {
            "/same" => http("302 Found", &["Location: /echo"], ""),
            "/echo" => http("200 OK", &[], &received.head),
            _ => http("302 Found", &[&format!("Location: http://{other}/echo")], ""),
        })
        .await;
        let send = move |path| async move {
            let request = get(server, path)
                .header("Authorization", "Bearer secret")
                .header("X-Keep", "1");
            client().send(request).await
        };
        let same_origin = send("/same").await.unwrap().text().to_ascii_lowercase();
        assert!(same_origin.contains("authorization: bearer secret"), "{same_origin}");
        let other_origin = send("/other").await.unwrap().text().to_ascii_lowercase();
        assert!(
            !other_origin.contains("authorization") && other_origin.contains("x-keep: 1"),
            "{other_origin}"
        );
    }

    #[tokio::test]
    async fn error_statuses_are_classified_and_carry_retry_after() {
        let in_a_minute = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + 60 * SECOND);
        let date = format!("Retry-After: {}", in_a_minute.format("%a, %d %b %Y %H:%M:%S GMT"));
        let server = serve(move |received| match received.path() {
            "/404" => http("404 Not Found", &[], "no such page"),
            "/500" => http("500 Internal Server Error", &["Retry-After: 3"], ""),
            "/429" => http("429 Too Many Requests", &["Retry-After: 3"], ""),
            _ => http("503 Service Unavailable", &[&date], ""),
        })
        .await;
        let error = |path| async move { check_status(client().send(get(server, path)).await.unwrap()).unwrap_err() };

        let not_found = error("/404").await;
        assert_eq!(
            not_found,
            HttpError::Status {
                status: 404,
                retry_after: None,
                body_excerpt: "no such page".into()
            }
        );
        assert!(!not_found.is_retryable());
        for path in ["/500", "/429"] {
            let error = error(path).await;
            assert!(error.is_retryable(), "{error}");
            assert_eq!(error.retry_after(), Some(3 * SECOND));
        }
        let wait = error("/503").await.retry_after().unwrap();
        assert!((58 * SECOND..=60 * SECOND).contains(&wait), "{wait:?}");
    }

    #[tokio::test]
    async fn a_server_too_slow_to_answer_times_out() {
        let server = serve_raw("127.0.0.1:0", |_, mut stream| async move {
            tokio::time::sleep(5 * SECOND).await;
            let _ = stream.write_all(http("200 OK", &[], "late").as_bytes()).await;
        })
        .await;
        let impatient = HttpClient::new(HttpConfig {
            timeout: Duration::from_millis(200),
            ..config(true)
        })
        .unwrap();
        let error = impatient.send(get(server, "/")).await.unwrap_err();
        assert_eq!(error, HttpError::Timeout(Duration::from_millis(200)));
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn the_timeout_covers_the_body_and_a_request_can_set_its_own() {
        let server = serve_raw("127.0.0.1:0", |_, mut stream| async move {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nthe first part")
                .await;
            tokio::time::sleep(5 * SECOND).await;
        })
        .await;
        let request = Request {
            timeout: Some(Duration::from_millis(200)),
            ..get(server, "/")
        };
        assert_eq!(
            client().send(request).await.unwrap_err(),
            HttpError::Timeout(Duration::from_millis(200))
        );
    }

    #[tokio::test]
    async fn a_body_over_max_bytes_fails_without_being_read_to_the_end() {
        // No Content-Length and no end: only a client that stops reading ever returns.
        let endless = serve_raw("127.0.0.1:0", |_, mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").await;
            let chunk = vec![b'x'; 64 * 1024];
            while stream.write_all(&chunk).await.is_ok() {}
        })
        .await;
        // Announces 10 MB and sends none of it: refused on the header alone.
        let announced = serve(|_| "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n".to_string()).await;
        for server in [endless, announced] {
            let error = client().send(get(server, "/")).await.unwrap_err();
            assert_eq!(error, HttpError::BodyTooLarge(MAX_BYTES));
            assert!(!error.is_retryable());
        }

        let exact = serve(|_| http("200 OK", &[], &"x".repeat(MAX_BYTES))).await;
        assert_eq!(client().send(get(exact, "/")).await.unwrap().body.len(), MAX_BYTES);
    }

    #[tokio::test]
    async fn a_head_response_has_no_body_whatever_its_content_length() {
        let server = serve(|_| "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n".to_string()).await;
        let response = client()
            .send(Request {
                method: Method::Head,
                ..get(server, "/")
            })
            .await
            .unwrap();
        assert_eq!((response.status, response.body.len()), (200, 0));
        assert_eq!(response.header("content-length"), Some("10485760"));
    }

    #[tokio::test]
    async fn a_refused_closed_or_reset_connection_is_retryable() {
        let closed = serve(|_| "HTTP/1.1 200 OK\r\nContent-Ty".to_string()).await;
        let reset = serve_raw("127.0.0.1:0", |_, mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let _ = stream.set_zero_linger();
        })
        .await;
        let refused = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        for server in [closed, reset, refused] {
            let error = client().send(get(server, "/")).await.unwrap_err();
            assert!(matches!(error, HttpError::Connect(_)), "{server}: {error:?}");
            assert!(error.is_retryable());
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_retryable_dns_error() {
        let error = client()
            .send(Request::get("http://no-such-host.invalid/"))
            .await
            .unwrap_err();
        assert!(matches!(error, HttpError::Dns(_)), "{error:?}");
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn urls_other_than_http_are_invalid() {
        for url in [
            "ftp://x",
            "not a url",
            "http://",
            "file:///etc/passwd",
            "mailto:a@example.com",
        ] {
            let error = client().send(Request::get(url)).await.unwrap_err();
            assert!(matches!(error, HttpError::InvalidUrl(_)), "{url}: {error:?}");
            assert!(!error.is_retryable());
        }
    }

    #[tokio::test]
    async fn a_json_post_arrives_intact() {
        let server = serve(|received| {
            http(
                "200 OK",
                &[],
                &format!("{}\n\n{}", received.head, String::from_utf8_lossy(&received.body)),
            )
        })
        .await;
        let payload = json!({"model": "m", "messages": [{"role": "user", "content": "héllo \"quoted\"\n"}]});
        let request = Request::post_json(format!("http://{server}/v1/chat/completions"), &payload)
            .header("Authorization", "Bearer key");
        let text = client().send(request).await.unwrap().text();
        let (head, body) = text.split_once("\n\n").unwrap();
        assert!(head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{head}");
        let head = head.to_ascii_lowercase();
        for expected in [
            "content-type: application/json",
            "authorization: bearer key",
            "user-agent: pageperfect/",
        ] {
            assert!(head.contains(expected), "{expected} missing from {head}");
        }
        assert_eq!(serde_json::from_str::<serde_json::Value>(body).unwrap(), payload);
    }

    #[tokio::test]
    async fn private_addresses_are_refused_without_connecting() {
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let server = serve(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            http("200 OK", &[], "reached")
        })
        .await;
        let port = server.port();
        let guarded = HttpClient::new(config(false)).unwrap();
        let cases = [
            (format!("http://127.0.0.1:{port}/"), "127.0.0.1"),
            (format!("http://localhost:{port}/"), "127.0.0.1"),
            ("http://0x7f.1/".to_string(), "127.0.0.1"),
            ("http://[::1]/".to_string(), "::1"),
            ("http://[::ffff:127.0.0.1]/".to_string(), "::ffff:127.0.0.1"),
            (
                "http://169.254.169.254/latest/meta-data/".to_string(),
                "169.254.169.254",
            ),
            ("http://10.1.2.3/".to_string(), "10.1.2.3"),
        ];
        for (url, address) in cases {
            match guarded.send(Request::get(url.as_str())).await {
                Err(HttpError::Blocked { address: blocked, .. }) => assert_eq!(blocked.to_string(), address, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(connections.load(Ordering::SeqCst), 0);

        let allowed = client()
            .send(Request::get(format!("http://localhost:{port}/")))
            .await
            .unwrap();
        assert_eq!(
            (allowed.text().as_str(), connections.load(Ordering::SeqCst)),
            ("reached", 1)
        );
    }

    #[tokio::test]
    async fn every_redirect_hop_passes_the_guard() {
        // 127.0.0.2 stands in for a public server that redirects inwards, to 127.0.0.1.
        fn only_127_0_0_2(address: IpAddr) -> Option<&'static str> {
            (address != IpAddr::from([127, 0, 0, 2])).then_some("not 127.0.0.2")
        }
        let port = serve(|_| http("200 OK", &[], "internal")).await.port();
        let literal = format!("http://127.0.0.1:{port}/");
        let name = format!("http://localhost:{port}/");
        let (to_literal, to_name) = (literal.clone(), name.clone());
        let public = serve_raw("127.0.0.2:0", move |received, mut stream| {
            let location = if received.path() == "/literal" {
                &to_literal
            } else {
                &to_name
            };
            let response = http("302 Found", &[&format!("Location: {location}")], "");
            async move {
                let _ = stream.write_all(response.as_bytes()).await;
            }
        })
        .await;
        let client = HttpClient::with_policy(config(false), only_127_0_0_2).unwrap();
        for (path, hop) in [("/literal", literal), ("/name", name)] {
            let error = client.send(get(public, path)).await.unwrap_err();
            assert!(
                matches!(&error, HttpError::Blocked { url, .. } if *url == hop),
                "{path}: {error:?}"
            );
        }
    }

    #[test]
    fn private_and_special_addresses_are_refused_and_public_ones_allowed() {
        let refused = [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "100.127.255.255",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "2002:c0a8:101::1",
            "2002:808:808::1",
            "64:ff9b:1::a9fe:a9fe",
            "fec0::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
        ];
        for address in refused {
            assert!(is_private(address.parse().unwrap()), "{address} should be refused");
        }
        for address in allowed {
            assert!(!is_private(address.parse().unwrap()), "{address} should be allowed");
        }
    }

    #[test]
    fn urls_to_blocked_literal_hosts_are_named_before_they_are_queued() {
        let blocked = [
            ("http://127.0.0.1:8080/x", "127.0.0.1 is a loopback address"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
            ("http://[::1]/", "::1 is a loopback address"),
            ("http://[::ffff:0:a9fe:a9fe]/", "::ffff:0:a9fe:a9fe is a link-local address"),
            ("http://localhost:5432/", "localhost is a loopback name"),
            ("http://API.LOCALHOST./", "api.localhost is a loopback name"),
        ];
        for (url, reason) in blocked {
            assert_eq!(blocked_literal_host(url).as_deref(), Some(reason), "{url}");
        }
        for url in ["https://example.com/", "http://8.8.8.8/", "http://localhost.example.com/", "not a url"] {
            assert_eq!(blocked_literal_host(url), None, "{url}");
        }
    }

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
            HttpError::BodyTooLarge(MAX_BYTES),
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

    #[test]
    fn check_status_passes_2xx_and_keeps_the_start_of_an_error_body() {
        let response = |status, body: &[u8]| Response {
            status,
            final_url: "http://example.com/".into(),
            headers: Vec::new(),
            content_type: None,
            body: body.to_vec(),
            retry_after: None,
            elapsed: Duration::ZERO,
        };
        assert_eq!(check_status(response(204, b"")).unwrap().status, 204);
        let error = check_status(response(502, "é".repeat(1000).as_bytes())).unwrap_err();
        assert_eq!(
            error,
            HttpError::Status {
                status: 502,
                retry_after: None,
                body_excerpt: "é".repeat(300)
            }
        );
        assert_eq!(response(200, b"ok \xff").text(), "ok \u{fffd}");
    }
}

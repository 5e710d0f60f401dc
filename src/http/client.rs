//! The HTTP client every stage shares: one pooled reqwest client with a timeout on each exchange,
//! a cap on body size, redirects followed by hand, the SSRF guard (`guard`) on every address it
//! connects to, and errors that say whether a retry can help (`error`). It runs on the workers'
//! tokio runtime and never calls into Postgres.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use url::{Host, Url};

use super::error::{error_chain, parse_retry_after, transport_error, HttpError, MAX_RETRY_AFTER};
use super::guard::{private_reason, AddressPolicy, GuardedResolver};

/// Characters of an error response's body kept in [`HttpError::Status`].
const BODY_EXCERPT_CHARS: usize = 300;

/// Request headers dropped when a redirect leads to another origin: they carry credentials.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
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

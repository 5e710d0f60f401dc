//! The `scraper_api` crawl provider: instead of fetching a page itself, the crawler asks a
//! scraping API (ScraperAPI's interface: `GET {crawl_api_url}?api_key=…&url=…&render=true…`) to
//! fetch it, for sites that need JavaScript rendering or block plain crawlers. The job's options
//! `render`, `premium` and `ultra_premium` are passed through. The key travels in the query
//! string, so every error message is scrubbed of it before it reaches tables users can read.

use super::crawl_http_config;
use crate::config;
use crate::http::client::{HttpConfig, Request};
use crate::http::error::HttpError;
use crate::queue::stage::StageError;
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// The job options passed through to the API, in the order they are sent.
const OPTIONS: [&str; 3] = ["render", "premium", "ultra_premium"];
/// The shortest timeout of one call: the API itself retries a hard page for up to 70 s
/// before it answers 500, and cutting it short would waste those retries.
const MIN_TIMEOUT: Duration = Duration::from_secs(70);

/// A configured scraping API and the options of one job.
#[derive(Debug, Clone)]
pub struct ScraperApi {
    endpoint: Url,
    key: String,
    /// The options of [`OPTIONS`] the job turned on.
    enabled: Vec<&'static str>,
}

impl ScraperApi {
    /// The API at `endpoint` with `key`, and the pass-through options of a job's `options`
    /// (each, when present, must be `true` or `false`).
    pub fn new(endpoint: &str, key: &str, job_options: &Value) -> Result<ScraperApi, String> {
        let endpoint = Url::parse(endpoint)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| format!("pageperfect.crawl_api_url must be an http(s) URL, not \"{endpoint}\""))?;
        if key.is_empty() {
            return Err("crawl_provider is scraper_api but pageperfect.crawl_api_key is not set".to_string());
        }
        let mut enabled = Vec::new();
        for option in OPTIONS {
            match job_options.get(option) {
                None | Some(Value::Bool(false)) | Some(Value::Null) => {}
                Some(Value::Bool(true)) => enabled.push(option),
                Some(other) => return Err(format!("job option \"{option}\" must be true or false, not {other}")),
            }
        }
        Ok(ScraperApi { endpoint, key: key.to_string(), enabled })
    }

    /// The API configured by `crawl_api_url` and `crawl_api_key` (main thread), for a job with
    /// `job_options`. A missing or bad setting is permanent: retrying cannot fix it.
    pub fn configured(job_options: &Value) -> Result<ScraperApi, StageError> {
        let endpoint = config::string(&config::CRAWL_API_URL)
            .ok_or_else(|| StageError::permanent("crawl_provider is scraper_api but pageperfect.crawl_api_url is not set"))?;
        let key = config::string(&config::CRAWL_API_KEY).unwrap_or_default();
        ScraperApi::new(&endpoint, &key, job_options).map_err(StageError::permanent)
    }

    /// The HTTP settings of calls to the API: the crawler's, except that the endpoint may be on a
    /// private network (a superuser configured it; the pages themselves are fetched by the API),
    /// that a call may take the time the API needs, and that no redirect is followed: a redirect
    /// would carry the key in its URL, and the guard is off for these calls.
    pub fn http_config() -> HttpConfig {
        let crawler = crawl_http_config();
        HttpConfig { allow_private: true, timeout: crawler.timeout.max(MIN_TIMEOUT), max_redirects: 0, ..crawler }
    }

    /// The call that fetches `target` through the API.
    pub fn request(&self, target: &str) -> Request {
        let mut call = self.endpoint.clone();
        {
            let mut query = call.query_pairs_mut();
            query.append_pair("api_key", &self.key).append_pair("url", target);
            for option in &self.enabled {
                query.append_pair(option, "true");
            }
        }
        Request::get(call.to_string())
    }

    /// `error` of a call for `target`, said as the API's and without the key.
    pub fn failure(&self, target: &str, error: HttpError) -> StageError {
        let scrub = |message: String| format!("scraping API fetching {target}: {}", self.scrub(&message));
        match StageError::from(error) {
            StageError::Retryable { message, retry_after } => StageError::Retryable { message: scrub(message), retry_after },
            StageError::Permanent(message) => StageError::Permanent(scrub(message)),
            // A transport error is never a kept one.
            kept @ StageError::Kept(_) => kept,
        }
    }

    /// `text` with the key, plain or URL-encoded, replaced by `***`.
    fn scrub(&self, text: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(self.key.as_bytes()).collect();
        text.replace(&self.key, "***").replace(&encoded, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_call_carries_the_key_the_target_and_the_options_the_job_turned_on() {
        let api = ScraperApi::new("https://api.scraper.test/v1?country_code=us", "k3y", &json!({"render": true, "premium": false}))
            .unwrap();
        let call = Url::parse(&api.request("https://shop.example/p?id=1&c=2#top").url).unwrap();
        let pairs: Vec<(String, String)> = call.query_pairs().into_owned().collect();
        assert_eq!(call.path(), "/v1");
        assert_eq!(
            pairs,
            [("country_code", "us"), ("api_key", "k3y"), ("url", "https://shop.example/p?id=1&c=2#top"), ("render", "true")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let all = ScraperApi::new("http://10.0.0.5:8080/", "k", &json!({"render": true, "premium": true, "ultra_premium": true}));
        assert!(all.unwrap().request("https://a.example/").url.ends_with("&render=true&premium=true&ultra_premium=true"));
    }

    #[test]
    fn bad_settings_and_options_are_refused_with_what_is_wrong() {
        assert!(ScraperApi::new("ftp://api.test/", "k", &json!({})).unwrap_err().contains("must be an http(s) URL"));
        assert!(ScraperApi::new("not a url", "k", &json!({})).is_err());
        assert!(ScraperApi::new("https://api.test/", "", &json!({})).unwrap_err().contains("crawl_api_key is not set"));
        assert_eq!(
            ScraperApi::new("https://api.test/", "k", &json!({"render": "yes"})).unwrap_err(),
            "job option \"render\" must be true or false, not \"yes\""
        );
        assert!(ScraperApi::new("https://api.test/", "k", &json!({"render": null, "other": 1})).is_ok());
    }

    #[test]
    fn failures_name_the_api_and_never_the_key() {
        let api = ScraperApi::new("https://api.test/", "s3cret/+key", &json!({})).unwrap();
        let leaked = HttpError::Connect(format!("error sending request for url ({})", api.request("https://a.example/").url));
        let error = api.failure("https://a.example/", leaked);
        assert!(!error.is_permanent());
        assert!(error.to_string().starts_with("scraping API fetching https://a.example/: "), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let refused = HttpError::Status { status: 403, retry_after: None, body_excerpt: "key s3cret/+key is out of credits".into() };
        let error = api.failure("https://a.example/", refused);
        assert!(error.is_permanent());
        assert_eq!(error.to_string(), "scraping API fetching https://a.example/: HTTP 403: key *** is out of credits");
        let throttled = HttpError::Status { status: 429, retry_after: Some(Duration::from_secs(3)), body_excerpt: String::new() };
        assert_eq!(api.failure("https://a.example/", throttled).retry_after(), Some(Duration::from_secs(3)));
    }
}

//! A conversation with Google on behalf of a service account: the access token (fetched with a
//! signed assertion, reused until it nears expiry, fetched again when the API says it is no
//! longer valid) and the API calls, each retried with backoff on timeouts, resets, 429 (after its
//! Retry-After) and 5xx. Runs on the worker's tokio runtime; no SPI.

use super::auth::{parse_token_response, token_request_body, AccessToken, AuthError, ServiceAccount, SEARCH_CONSOLE_SCOPE};
use super::search_analytics::AnalyticsError;
use crate::backoff;
use crate::http::client::{check_status, HttpClient, Request};
use crate::http::error::HttpError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Tries of one API call before it is given up (the first try included).
pub const MAX_TRIES: i32 = 5;
/// Wait before the second try; it doubles for each further one (2, 4, 8, 16 s).
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Longest wait honoured from a Retry-After, so that one call cannot stall the ingestion.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A token this close to its expiry is replaced before use.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why a call failed. `retryable` tells whether a later attempt of the whole ingestion may do better.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub message: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl From<AuthError> for CallError {
    /// A refused assertion or an unusable key does not get better by itself.
    fn from(error: AuthError) -> CallError {
        CallError { message: error.to_string(), retryable: false, retry_after: None }
    }
}

impl From<HttpError> for CallError {
    fn from(error: HttpError) -> CallError {
        CallError { retryable: error.is_retryable(), retry_after: error.retry_after(), message: error.to_string() }
    }
}

pub struct Session {
    client: HttpClient,
    account: ServiceAccount,
    token_url: String,
    token: Option<(AccessToken, Instant)>,
    /// Requests sent, token exchanges included.
    pub requests: u32,
}

impl Session {
    pub fn new(client: HttpClient, account: ServiceAccount, token_url: String) -> Session {
        Session { client, account, token_url, token: None, requests: 0 }
    }

    /// The current access token, exchanging a fresh assertion for one when there is none or it
    /// is about to expire.
    pub async fn access_token(&mut self) -> Result<String, CallError> {
        if let Some((token, fetched)) = &self.token {
            let lifetime = Duration::from_secs(token.expires_in.max(0) as u64);
            if fetched.elapsed() + TOKEN_EXPIRY_MARGIN < lifetime {
                return Ok(token.access_token.clone());
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let assertion = self.account.assertion(SEARCH_CONSOLE_SCOPE, &self.token_url, now)?;
        let request = Request::post_form(&self.token_url, token_request_body(&assertion));
        self.requests += 1;
        let response = self.client.send(request).await?;
        let parsed = parse_token_response(&response.body);
        if let Err(error) = check_status(response) {
            // Google refuses a bad assertion with 400 and an OAuth error body, whose reason says more.
            return Err(match parsed {
                Err(rejected @ AuthError::TokenRejected { .. }) if !error.is_retryable() => rejected.into(),
                _ => error.into(),
            });
        }
        let token = parsed?;
        let access_token = token.access_token.clone();
        self.token = Some((token, Instant::now()));
        Ok(access_token)
    }

    /// Sends the request `build` makes with the current token and reads its 2xx answer with
    /// `parse`. A 401 fetches a new token once; retryable failures (a garbled answer too) are tried
    /// again after a backoff (or the server's Retry-After) up to [`MAX_TRIES`] times.
    pub async fn call<T>(
        &mut self,
        build: impl Fn() -> Request,
        parse: impl Fn(&[u8]) -> Result<T, AnalyticsError>,
    ) -> Result<T, CallError> {
        let mut renewed_token = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match self.access_token().await {
                Err(error) => error,
                Ok(token) => {
                    self.requests += 1;
                    let request = build().header("Authorization", format!("Bearer {token}"));
                    match self.client.send(request).await.and_then(check_status) {
                        Ok(response) => match parse(&response.body) {
                            Ok(answer) => return Ok(answer),
                            Err(error) => CallError { retryable: error.is_retryable(), retry_after: None, message: error.to_string() },
                        },
                        Err(HttpError::Status { status: 401, .. }) if !renewed_token => {
                            // Revoked or expired early: a new token, and this try does not count.
                            self.token = None;
                            renewed_token = true;
                            tries -= 1;
                            continue;
                        }
                        Err(error) => error.into(),
                    }
                }
            };
            if !error.retryable || tries >= MAX_TRIES {
                return Err(CallError {
                    message: if tries > 1 { format!("{} (gave up after {tries} tries)", error.message) } else { error.message },
                    ..error
                });
            }
            let retry_after = error.retry_after.map(|wait| wait.min(MAX_RETRY_AFTER));
            tokio::time::sleep(backoff::stage_retry_delay(FIRST_RETRY_DELAY, tries, retry_after, fastrand::f64())).await;
        }
    }
}

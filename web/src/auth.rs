//! Who may do what: bearer tokens checked with `pageperfect.verify_cron_secret` (the database
//! keeps only salted PBKDF2 hashes), dashboard sessions started by presenting such a token, and
//! the CSRF token of each session's forms. A token that verified is remembered (as its SHA-256)
//! for `VERIFIED_TTL`, so that a dashboard or a scraper does not pay a PBKDF2 check per request;
//! a changed or removed secret stops working within that time.

use crate::db::{self, Failure};
use axum::http::{header, HeaderMap, StatusCode};
use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

const VERIFIED_TTL: Duration = Duration::from_secs(60);
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
pub const SESSION_COOKIE: &str = "pageperfect_session";

pub struct Auth {
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// A dashboard login: the token it was started with (checked again as it ages), the CSRF token
/// its forms carry, and what the last action did, shown once on the next page (kept here rather
/// than in the redirect's URL, so that a link cannot put words of its own on the page).
#[derive(Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    expires: Instant,
    notice: Option<String>,
}

/// 32 random bytes from the operating system, as hex.
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two strings are equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

pub fn unauthorized(message: &str) -> Failure {
    Failure::new(StatusCode::UNAUTHORIZED, message)
}

impl Auth {
    pub fn new() -> Auth {
        Auth { verified: Mutex::new(HashMap::new()), sessions: Mutex::new(HashMap::new()) }
    }

    /// Whether `token` is the cron secret `name`.
    pub async fn verify(&self, pool: &Pool, name: &str, token: &str) -> Result<bool, Failure> {
        if token.is_empty() {
            return Ok(false);
        }
        let key: [u8; 32] = Sha256::new().chain_update(name).chain_update([0]).chain_update(token).finalize().into();
        let now = Instant::now();
        {
            let mut verified = self.verified.lock().unwrap();
            verified.retain(|_, until| *until > now);
            if verified.contains_key(&key) {
                return Ok(true);
            }
        }
        let ok = db::one_value(pool, "SELECT to_jsonb(pageperfect.verify_cron_secret($1::text, $2::text))", &[name, token])
            .await?
            .as_bool()
            == Some(true);
        if ok {
            self.verified.lock().unwrap().insert(key, now + VERIFIED_TTL);
        }
        Ok(ok)
    }

    /// Ok when the request's bearer token is the cron secret `name`; 401 otherwise.
    pub async fn require_bearer(&self, pool: &Pool, headers: &HeaderMap, name: &str) -> Result<(), Failure> {
        let token = bearer(headers).ok_or_else(|| unauthorized("an Authorization: Bearer token is required"))?;
        self.require_token(pool, name, token).await
    }

    /// Ok when `token` is the cron secret `name`; 401 otherwise.
    pub async fn require_token(&self, pool: &Pool, name: &str, token: &str) -> Result<(), Failure> {
        if self.verify(pool, name, token).await? {
            Ok(())
        } else {
            Err(unauthorized("the token is not valid"))
        }
    }

    /// A new dashboard session for a token that verified; returns its id.
    pub fn start_session(&self, token: &str) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap();
        sessions.retain(|_, s| s.expires > now);
        let session = Session { token: token.to_string(), csrf: random_token(), expires: now + SESSION_TTL, notice: None };
        sessions.insert(id.clone(), session);
        id
    }

    /// The live session named by the request's cookie whose token still verifies.
    pub async fn session(&self, pool: &Pool, headers: &HeaderMap, name: &str) -> Result<Option<Session>, Failure> {
        let Some(id) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
        let session = {
            let sessions = self.sessions.lock().unwrap();
            sessions.get(id).filter(|s| s.expires > Instant::now()).cloned()
        };
        let Some(session) = session else { return Ok(None) };
        if self.verify(pool, name, &session.token).await? {
            Ok(Some(session))
        } else {
            self.end_session(id);
            Ok(None)
        }
    }

    /// Leaves `notice` for the next page of the request's session.
    pub fn set_notice(&self, headers: &HeaderMap, notice: String) {
        let Some(id) = cookie(headers, SESSION_COOKIE) else { return };
        if let Some(session) = self.sessions.lock().unwrap().get_mut(id) {
            session.notice = Some(notice);
        }
    }

    /// The notice left for the request's session, taken: it shows once.
    pub fn take_notice(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        self.sessions.lock().unwrap().get_mut(id)?.notice.take()
    }

    pub fn end_session(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
    }
}

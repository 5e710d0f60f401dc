//! Google service-account OAuth: reading the JSON key file a user downloads,
//! signing the RS256 JWT assertion, and the token exchange's request body and
//! response.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const SEARCH_CONSOLE_SCOPE: &str = "https://www.googleapis.com/auth/webmasters.readonly";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google accepts assertions that expire at most an hour after they are issued.
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// How much of an unexpected response body to quote in an error.
const EXCERPT_CHARS: usize = 200;

#[derive(Clone, PartialEq)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
    pub private_key_id: Option<String>,
}

#[derive(Clone, PartialEq)]
pub struct AccessToken {
    pub access_token: String,
    pub expires_in: i64,
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum AuthError {
    #[error("the service-account key file is not readable JSON: {0}")]
    KeyNotJson(String),
    #[error(
        "the service-account key file has no {}; download a new JSON key for the service account",
        .0.join(", ")
    )]
    MissingFields(Vec<&'static str>),
    #[error(
        "this is a {0:?} credentials file, not a service-account key; create a JSON key \
         under IAM & Admin > Service accounts > Keys in the Google Cloud console"
    )]
    NotServiceAccount(String),
    #[error("the service account's private_key is not a usable RSA private key: {0}")]
    InvalidPrivateKey(String),
    #[error(
        "Google refused the token request: {error}{}",
        description_suffix(.description.as_deref())
    )]
    TokenRejected {
        error: String,
        description: Option<String>,
    },
    #[error("unexpected token response from Google ({problem}): {excerpt}")]
    BadTokenResponse { problem: String, excerpt: String },
}

fn description_suffix(description: Option<&str>) -> String {
    description.map(|d| format!(" ({d})")).unwrap_or_default()
}

/// The key file's fields, all optional so that missing ones can be listed together.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
    private_key_id: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl ServiceAccount {
    pub fn parse(json: &str) -> Result<ServiceAccount, AuthError> {
        let file: KeyFile =
            serde_json::from_str(json).map_err(|e| AuthError::KeyNotJson(e.to_string()))?;
        if let Some(kind) = file.kind.filter(|kind| kind != "service_account") {
            return Err(AuthError::NotServiceAccount(kind));
        }
        let present = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let required = [
            ("client_email", present(file.client_email)),
            ("private_key", present(file.private_key)),
            ("token_uri", present(file.token_uri)),
        ];
        let missing: Vec<&'static str> = required
            .iter()
            .filter_map(|(name, value)| value.is_none().then_some(*name))
            .collect();
        if !missing.is_empty() {
            return Err(AuthError::MissingFields(missing));
        }
        let [client_email, private_key, token_uri] =
            required.map(|(_, value)| value.unwrap_or_default());
        // Keys copied through shells or environment variables often keep the JSON
        // escapes, leaving a literal backslash-n where PEM needs line breaks.
        let private_key = if private_key.contains('\n') {
            private_key
        } else {
            private_key.replace("\\n", "\n")
        };
        // Parsed now so a malformed key is reported when the file is loaded, not at first use.
        signing_key(&private_key)?;
        Ok(ServiceAccount {
            client_email,
            private_key,
            token_uri,
            private_key_id: present(file.private_key_id),
        })
    }

    /// The signed JWT to exchange at `audience`, the token URL actually posted to.
    pub fn assertion(
        &self,
        scope: &str,
        audience: &str,
        now_unix: i64,
    ) -> Result<String, AuthError> {
        let key = signing_key(&self.private_key)?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let claims = Claims {
            iss: &self.client_email,
            scope,
            aud: audience,
            iat: now_unix,
            exp: now_unix + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| AuthError::InvalidPrivateKey(e.to_string()))
    }
}

/// Keeps the private key out of logs.
impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .field("private_key_id", &self.private_key_id)
            .finish()
    }
}

/// Keeps the bearer token out of logs.
impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

fn signing_key(pem: &str) -> Result<EncodingKey, AuthError> {
    EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| AuthError::InvalidPrivateKey(e.to_string()))
}

/// The `application/x-www-form-urlencoded` body POSTed to the token URL.
pub fn token_request_body(assertion: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", JWT_BEARER_GRANT)
        .append_pair("assertion", assertion)
        .finish()
}

pub fn parse_token_response(body: &[u8]) -> Result<AccessToken, AuthError> {
    #[derive(Deserialize)]
    struct TokenResponse {
        access_token: Option<String>,
        expires_in: Option<i64>,
        // Usually a string, but other Google endpoints send an object here.
        error: Option<serde_json::Value>,
        error_description: Option<String>,
    }
    let bad = |problem: String| AuthError::BadTokenResponse {
        problem,
        excerpt: excerpt(body),
    };
    let response: TokenResponse = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if let Some(error) = response.error {
        return Err(AuthError::TokenRejected {
            error: error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned),
            description: response.error_description,
        });
    }
    match (response.access_token, response.expires_in) {
        (Some(access_token), Some(expires_in)) => Ok(AccessToken {
            access_token,
            expires_in,
        }),
        _ => Err(bad("access_token or expires_in is missing".to_owned())),
    }
}

fn excerpt(body: &[u8]) -> String {
    crate::excerpt(&String::from_utf8_lossy(body), EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::{json, Value};

    /// Test-only key pair made with `openssl genrsa 2048` (PKCS#8, like Google's).
    const TEST_PRIVATE_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC1+ZWJCc035ix+
e8oX8P9PAgX6mRt85eMhBCanY1GxjmOIlK3IJOKbpGheP6efnfG/xpBZUnkWIuAf
afjA5tDMzWrIRdSmvGHoMEq2MKY+CeCI23KjJEK04mVQcG4E7wwg1cyb6b4rEuzQ
l7NPBy61Ac+gnzG+m6ualV8ZIQ485B5MwLgDnoAgCe5VXtb/W0ciOmVCfxwEUeLY
tUup89rq5Q/YlToKKcxg7hiZcFyMvj5oH1pP8xJVUqLl/WvUeAFqw2yGqOSLlOW8
Jmtb6CJ4CUupVEZKsNSAXJ8lPXyjqhoJrph5+3rozQBsh9Jozwi1sUxQC5uGXutD
L2YjdsDXAgMBAAECggEABvWS5MPC3RFowDQ8Z//9Hj4QkSM2gZH1HA0hlqMzZkab
bdy/F065z9lQwydMt3ZTNCdZhoujOoJ+RGqewG8oqxHBX1le/DrAxSAbq1i0SDPD
1NgM9p+WDCmLAFwxs5nvbSNgCNJpRb0ai2ZRzYLpJAj8B24vI9VQ5xTb/IUJcLCj
9T9tpUGtUn1mDHvgI4c5P8donR0fT74vNSkBTScMBHE53GjOr5L1DfWtlVAyfjBc
CYxlQrqLH7KKtajrs5MDeMtn3DnfKt/yaxrI1NoUETKl70ZHkh7+JHesY9l4Lug3
tJayRRQGqh4v9MF5l311w1rmU5AAzQUpIOv1CekO8QKBgQD8pj3oMMAO3k6SekHF
w5btovFNoGpaHxP/4c1CCnJsQNl/xffhviRQRxFuqlLwyYEcVLZXGS/okjZcwDt9
nBdCyc3+xuVsD9y7fWi2aI7Bz+fiNslT7+dMFDF9C41jrc3Posk8PMaybbKqnAzX
jo2pPWmAlrfc4sLb/2uzqF32aQKBgQC4Y2YWQ+gExAZGhThyFxhmiXdsoR7k4Cbx
ozsiJ6iI93o4B7gqDl1Ug0PWzxla52lwdiut4RX7DxqHs5n018gJ7Ssn/Xv3Msdj
Xu3JsDet4aGNNGtDwRv3z8ZnBrzuDoDypfpqdbGxsEyu6+DY6UPMZ8ScYqTGDxmk
5KmE3wyVPwKBgFkUODGctqrHYQauSnBzFMz2rYPEMptR59hJgfht/IgEmWs+nrae
NumDFTdioFm7gmU9zQiKneSvYLF1KcSQ+3aV9qaE9DEUqqwEfJ4L4YGeT1DoJjYN
GQ0u9X/0ScbCahVyfOdbOmeA3AThfnmmDnaEa6Vl/q/H2BJ/TTcL/w05AoGBAKId
ImBpC9FE14+hCWOl0po0On+TmSn5ucOxlAgPfioOC7K/drfjMUNgtYBjTROTaiyq
ePTDdSPqv5SX38BZB1NS5iKexyMrzgocKEyvVgTW38baU4SagBB86R8j2XAj6FNu
gqCfIb/sFT+lu2Z6kFVi1oX4ZI6OMCm9sR1VTibZAoGADOxoLXf+/8ss7ERPCERB
jsPLE3CicgGHG1ZoodCN+v1WFFMJY2S1XGYy+Q8u+zQKJ0V3GVtt1zEgYZzWh0rj
obETc3C3XUkwXDnEcoGZtLgkInoysLlGbNQ2lpmQzse4M2s4uLiChG6ZFsY6aLmc
hj2jsOPDUeP6YsV8PYcRtxI=
-----END PRIVATE KEY-----
";
    const TEST_PUBLIC_KEY: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtfmViQnNN+YsfnvKF/D/
TwIF+pkbfOXjIQQmp2NRsY5jiJStyCTim6RoXj+nn53xv8aQWVJ5FiLgH2n4wObQ
zM1qyEXUprxh6DBKtjCmPgngiNtyoyRCtOJlUHBuBO8MINXMm+m+KxLs0JezTwcu
tQHPoJ8xvpurmpVfGSEOPOQeTMC4A56AIAnuVV7W/1tHIjplQn8cBFHi2LVLqfPa
6uUP2JU6CinMYO4YmXBcjL4+aB9aT/MSVVKi5f1r1HgBasNshqjki5TlvCZrW+gi
eAlLqVRGSrDUgFyfJT18o6oaCa6Yeft66M0AbIfSaM8ItbFMUAubhl7rQy9mI3bA
1wIDAQAB
-----END PUBLIC KEY-----
";
    const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
    const EMAIL: &str = "reader@project.iam.gserviceaccount.com";

    fn key_file() -> Value {
        json!({
            "type": "service_account",
            "project_id": "project",
            "private_key_id": "abc123",
            "private_key": TEST_PRIVATE_KEY,
            "client_email": EMAIL,
            "token_uri": TOKEN_URI,
        })
    }

    #[test]
    fn parses_a_downloaded_key_file() {
        let account = ServiceAccount::parse(&key_file().to_string()).unwrap();
        assert_eq!(account.client_email, EMAIL);
        assert_eq!(account.private_key, TEST_PRIVATE_KEY);
        assert_eq!(account.token_uri, TOKEN_URI);
        assert_eq!(account.private_key_id.as_deref(), Some("abc123"));
        assert!(!format!("{account:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn signs_an_assertion_google_can_verify() {
        let account = ServiceAccount::parse(&key_file().to_string()).unwrap();
        let jwt = account
            .assertion(SEARCH_CONSOLE_SCOPE, TOKEN_URI, 1_700_000_000)
            .unwrap();

        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some("abc123"));

        let public = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[TOKEN_URI]);
        validation.set_issuer(&[EMAIL]);
        validation.validate_exp = false; // the fixed clock above is long past
        let claims = jsonwebtoken::decode::<Value>(&jwt, &public, &validation)
            .unwrap()
            .claims;
        assert_eq!(
            claims,
            json!({
                "iss": EMAIL,
                "scope": SEARCH_CONSOLE_SCOPE,
                "aud": TOKEN_URI,
                "iat": 1_700_000_000,
                "exp": 1_700_003_600,
            })
        );

        // The signature really is checked: another assertion's claims under this
        // signature are rejected.
        let other = account
            .assertion(SEARCH_CONSOLE_SCOPE, TOKEN_URI, 1_800_000_000)
            .unwrap();
        let [head, _, signature]: [&str; 3] =
            jwt.split('.').collect::<Vec<_>>().try_into().unwrap();
        let spliced = format!("{head}.{}.{signature}", other.split('.').nth(1).unwrap());
        assert!(jsonwebtoken::decode::<Value>(&spliced, &public, &validation).is_err());
    }

    #[test]
    fn omits_kid_without_a_key_id() {
        let mut file = key_file();
        file.as_object_mut().unwrap().remove("private_key_id");
        let account = ServiceAccount::parse(&file.to_string()).unwrap();
        assert_eq!(account.private_key_id, None);
        let jwt = account.assertion("scope", TOKEN_URI, 0).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&jwt).unwrap().kid, None);
    }

    #[test]
    fn repairs_escaped_newlines_in_the_key() {
        let mut file = key_file();
        file["private_key"] = json!(TEST_PRIVATE_KEY.replace('\n', "\\n"));
        let account = ServiceAccount::parse(&file.to_string()).unwrap();
        assert_eq!(account.private_key, TEST_PRIVATE_KEY);
    }

    #[test]
    fn bad_keys_are_reported() {
        let mut file = key_file();
        file["private_key"] =
            json!("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
        let err = ServiceAccount::parse(&file.to_string()).unwrap_err();
        assert!(matches!(err, AuthError::InvalidPrivateKey(_)), "{err:?}");

        let account = ServiceAccount {
            client_email: EMAIL.into(),
            private_key: "not a key".into(),
            token_uri: TOKEN_URI.into(),
            private_key_id: None,
        };
        let err = account
            .assertion(SEARCH_CONSOLE_SCOPE, TOKEN_URI, 0)
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("the service account's private_key is not a usable"));
    }

    #[test]
    fn key_file_errors_are_clear() {
        let err = ServiceAccount::parse("{not json").unwrap_err();
        assert!(matches!(err, AuthError::KeyNotJson(_)), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("the service-account key file is not readable JSON"));

        let err = ServiceAccount::parse(r#"{"type": "service_account", "client_email": " "}"#);
        let missing = vec!["client_email", "private_key", "token_uri"];
        assert_eq!(err, Err(AuthError::MissingFields(missing)));

        let mut file = key_file();
        file.as_object_mut().unwrap().remove("token_uri");
        let err = ServiceAccount::parse(&file.to_string()).unwrap_err();
        assert_eq!(err, AuthError::MissingFields(vec!["token_uri"]));
        assert!(err.to_string().contains("has no token_uri"));

        let user_credentials =
            r#"{"type": "authorized_user", "client_id": "x", "refresh_token": "y"}"#;
        let err = ServiceAccount::parse(user_credentials).unwrap_err();
        assert_eq!(err, AuthError::NotServiceAccount("authorized_user".into()));
        assert!(err.to_string().contains("not a service-account key"));
    }

    #[test]
    fn token_request_body_is_form_encoded() {
        let body = token_request_body("aGVh.cGF5+bG9h/ZA==.c2ln");
        assert!(body.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ));
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("grant_type".into(), JWT_BEARER_GRANT.into()),
                ("assertion".into(), "aGVh.cGF5+bG9h/ZA==.c2ln".into()),
            ]
        );
    }

    #[test]
    fn parses_token_responses() {
        let ok = br#"{"access_token": "ya29.abc", "expires_in": 3599, "token_type": "Bearer"}"#;
        let token = parse_token_response(ok).unwrap();
        assert_eq!(
            (token.access_token.as_str(), token.expires_in),
            ("ya29.abc", 3599)
        );
        assert!(!format!("{token:?}").contains("ya29"));

        let refused =
            br#"{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}"#;
        let err = parse_token_response(refused).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Google refused the token request: invalid_grant (Invalid JWT Signature.)"
        );
        let err = parse_token_response(br#"{"error": {"code": 400}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Google refused the token request: {"code":400}"#
        );

        let html = format!("<html>{}</html>", "x".repeat(500));
        match parse_token_response(html.as_bytes()).unwrap_err() {
            AuthError::BadTokenResponse { excerpt, .. } => {
                assert!(excerpt.starts_with("<html>xx") && excerpt.ends_with('…'));
                assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
            }
            other => panic!("{other:?}"),
        }
        let err = parse_token_response(br#"{"token_type": "Bearer"}"#).unwrap_err();
        assert!(matches!(err, AuthError::BadTokenResponse { .. }), "{err:?}");
    }
}

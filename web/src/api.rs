//! The PagePerfect guides' scheduler API, `/api/scheduler?action=…` (`status`, `jobs`, `health`,
//! `toggle`, `trigger`), extended with `runs`, `queues`, `dead_letters` and `workflow`, and the
//! guides' trigger endpoints (`/functions/v1/pageperfect-cron-*`, `/api/cron/webhook`). Every
//! answer is `{"success": true, "data": …}` or `{"success": false, "error": …, "hint": …}`; each
//! action is one call of the extension's SQL functions as the server's role.

use crate::db::{self, Failure};
use crate::App;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The cron secret that the guides' endpoint `path` checks, named after it.
pub const TRIGGER_SECRETS: [(&str, &str); 4] = [
    ("/functions/v1/pageperfect-cron-ingest-gsc", "pageperfect-cron-ingest-gsc"),
    ("/functions/v1/pageperfect-cron-process-urls", "pageperfect-cron-process-urls"),
    ("/functions/v1/pageperfect-cron-recalibrate-ctr", "pageperfect-cron-recalibrate-ctr"),
    ("/api/cron/webhook", "pageperfect-cron-webhook"),
];

fn secret_for(path: &str) -> &'static str {
    TRIGGER_SECRETS.iter().find(|(p, _)| *p == path).map(|(_, name)| *name).expect("a trigger endpoint without a secret")
}

/// The JSON answer for an outcome.
pub fn answer(outcome: Result<Value, Failure>) -> Response {
    match outcome {
        Ok(data) => Json(json!({"success": true, "data": data})).into_response(),
        Err(failure) => failure.into_response(),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({"success": false, "error": self.message});
        if let Some(hint) = self.hint {
            body["hint"] = Value::String(hint);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The query parameters of `/api/scheduler`.
#[derive(Deserialize, Default)]
pub struct Params {
    action: Option<String>,
    job: Option<String>,
    enable: Option<String>,
    limit: Option<String>,
    id: Option<String>,
    url: Option<String>,
    include_retried: Option<String>,
}

fn required<'a>(value: &'a Option<String>, name: &str, action: &str) -> Result<&'a str, Failure> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Failure::bad_request(format!("action={action} needs the parameter {name}")))
}

const READ_ACTIONS: [&str; 7] = ["status", "jobs", "health", "runs", "queues", "dead_letters", "workflow"];
const WRITE_ACTIONS: [&str; 4] = ["toggle", "trigger", "dead_letters", "workflow"];

/// `GET|POST /api/scheduler?action=…` with a bearer token.
pub async fn scheduler(State(app): State<Arc<App>>, method: Method, headers: HeaderMap, Query(params): Query<Params>) -> Response {
    answer(scheduler_action(&app, &method, &headers, &params).await)
}

async fn scheduler_action(app: &App, method: &Method, headers: &HeaderMap, params: &Params) -> Result<Value, Failure> {
    app.auth.require_bearer(&app.pool, headers, &app.config.secret_name).await?;
    let action = required(&params.action, "action", "…")?;
    let write = *method == Method::POST;
    let known = if write { WRITE_ACTIONS.contains(&action) } else { READ_ACTIONS.contains(&action) };
    if !known {
        let (other, verb) = if write { (READ_ACTIONS.contains(&action), "GET") } else { (WRITE_ACTIONS.contains(&action), "POST") };
        return Err(if other {
            Failure::new(StatusCode::METHOD_NOT_ALLOWED, format!("action={action} takes {verb}"))
        } else {
            Failure::bad_request(format!(
                "unknown action \"{action}\": GET status, jobs, health, runs, queues, dead_letters, workflow; POST toggle, trigger, dead_letters, workflow"
            ))
        });
    }
    if write && app.config.read_only {
        return Err(Failure::new(StatusCode::FORBIDDEN, "the server is read-only (--read-only): no actions"));
    }
    run_action(app, action, write, params).await
}

/// One action; `write` for the POST forms. Shared by the API and the dashboard's forms.
pub async fn run_action(app: &App, action: &str, write: bool, params: &Params) -> Result<Value, Failure> {
    let pool = &app.pool;
    match (action, write) {
        ("status", false) => db::row(pool, "SELECT * FROM pageperfect.get_cron_job_status()", &[]).await,
        ("jobs", false) => db::rows(pool, "SELECT * FROM pageperfect.manage_cron_jobs()", &[]).await,
        ("health", false) => db::rows(pool, "SELECT * FROM pageperfect.get_scheduler_health()", &[]).await,
        ("runs", false) => {
            let job = required(&params.job, "job", action)?;
            let limit = params.limit.as_deref().unwrap_or("20");
            db::rows(pool, "SELECT * FROM pageperfect.job_runs($1::text, $2::text::int)", &[job, limit]).await
        }
        ("queues", false) => db::rows(pool, "SELECT * FROM pageperfect.metrics_all()", &[]).await,
        ("dead_letters", false) => {
            let include_retried = params.include_retried.as_deref().unwrap_or("false");
            let limit = params.limit.as_deref().unwrap_or("100");
            db::rows(pool, "SELECT * FROM pageperfect.list_dead_letters($1::text::boolean, $2::text::int)", &[include_retried, limit])
                .await
        }
        ("workflow", false) => {
            let id = required(&params.id, "id", action)?;
            db::one_value(pool, "SELECT pageperfect.workflow_detail($1::text::uuid)", &[id]).await
        }
        ("toggle", true) => {
            let job = required(&params.job, "job", action)?;
            let enable = required(&params.enable, "enable", action)?;
            let result =
                db::row(pool, "SELECT * FROM pageperfect.toggle_cron_job($1::text, $2::text::boolean)", &[job, enable]).await?;
            if result["success"] == Value::Bool(true) {
                Ok(result)
            } else {
                Err(Failure::new(StatusCode::NOT_FOUND, result["message"].as_str().unwrap_or("no such job").to_string()))
            }
        }
        ("trigger", true) => {
            let job = required(&params.job, "job", action)?;
            db::row(pool, "SELECT pageperfect.run_job_now($1::text) AS runid", &[job]).await
        }
        ("dead_letters", true) => {
            let id = required(&params.id, "id", action)?;
            db::row(pool, "SELECT $1::text::bigint AS dead_letter_id, pageperfect.retry_dead_letter($1::text::bigint) AS msg_id", &[id])
                .await
        }
        ("workflow", true) => {
            let url = required(&params.url, "url", action)?;
            db::row(pool, "SELECT pageperfect.run_workflow($1::text) AS job_id", &[url]).await
        }
        _ => Err(Failure::bad_request(format!("unknown action \"{action}\""))),
    }
}

impl Params {
    /// Parameters for `run_action` from a dashboard form.
    pub fn of(job: Option<String>, enable: Option<String>, id: Option<String>, url: Option<String>) -> Params {
        Params { job, enable, id, url, ..Params::default() }
    }
}

/// The JSON object of a trigger request's body.
fn body_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Failure::bad_request("the body must be a JSON object")),
        Err(e) => Err(Failure::bad_request(format!("the body is not valid JSON: {e}"))),
    }
}

/// A field of the body as text for a SQL cast: a string as it is, a number written out; absent
/// or null gives `default`.
fn field(object: &serde_json::Map<String, Value>, name: &str, default: &str) -> Result<String, Failure> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(Failure::bad_request(format!("{name} must be a string or a number (got {other})"))),
    }
}

/// `POST /functions/v1/pageperfect-cron-*` with `cronSecret` in the JSON body.
pub async fn trigger(State(app): State<Arc<App>>, uri: axum::http::Uri, body: Bytes) -> Response {
    answer(trigger_endpoint(&app, uri.path(), &body).await)
}

async fn trigger_endpoint(app: &App, path: &str, body: &Bytes) -> Result<Value, Failure> {
    let object = body_object(body)?;
    let secret = match object.get("cronSecret") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(crate::auth::unauthorized("cronSecret is required in the JSON body")),
    };
    app.auth.require_token(&app.pool, secret_for(path), secret).await?;
    if app.config.read_only {
        return Err(Failure::new(StatusCode::FORBIDDEN, "the server is read-only (--read-only): no actions"));
    }
    let pool = &app.pool;
    match path {
        "/functions/v1/pageperfect-cron-ingest-gsc" => {
            let date = field(&object, "date", "")?;
            db::one_value(pool, "SELECT pageperfect.ingest_gsc(nullif($1::text, '')::date)", &[&date]).await
        }
        "/functions/v1/pageperfect-cron-process-urls" => {
            let limit = field(&object, "limit", "50")?;
            let older_than = field(&object, "olderThan", "2 days")?;
            db::row(pool, "SELECT pageperfect.process_urls($1::text::int, $2::text::interval) AS started", &[&limit, &older_than])
                .await
        }
        "/functions/v1/pageperfect-cron-recalibrate-ctr" => {
            let lookback_days = field(&object, "lookbackDays", "90")?;
            db::row(pool, "SELECT * FROM pageperfect.recalibrate_ctr($1::text::int)", &[&lookback_days]).await
        }
        _ => unreachable!("no route for {path}"),
    }
}

/// `POST /api/cron/webhook` with `X-Webhook-Secret`: the processor's pass. Sweeping (stuck or
/// orphaned work) is a superuser's function: it runs when the server's role may execute it (the
/// pipeline workers sweep continuously anyway); then the due URLs are processed.
pub async fn webhook(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    answer(webhook_pass(&app, &headers).await)
}

async fn webhook_pass(app: &App, headers: &HeaderMap) -> Result<Value, Failure> {
    let secret = headers
        .get("x-webhook-secret")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| crate::auth::unauthorized("the X-Webhook-Secret header is required"))?;
    app.auth.require_token(&app.pool, secret_for("/api/cron/webhook"), secret).await?;
    if app.config.read_only {
        return Err(Failure::new(StatusCode::FORBIDDEN, "the server is read-only (--read-only): no actions"));
    }
    let pool = &app.pool;
    let may_sweep =
        db::one_value(pool, "SELECT to_jsonb(has_function_privilege('pageperfect.trigger_sweeper()', 'EXECUTE'))", &[]).await?;
    let swept = if may_sweep == Value::Bool(true) {
        db::one_value(pool, "SELECT pageperfect.trigger_sweeper()", &[]).await?
    } else {
        Value::Null
    };
    let processed = db::one_value(pool, "SELECT to_jsonb(pageperfect.process_urls())", &[]).await?;
    Ok(json!({"swept": swept, "started": processed}))
}

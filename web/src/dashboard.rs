//! The dashboard at `/`: one server-rendered HTML page (no script) with workers, cron jobs,
//! queues, pipeline stages, alerts, dead letters and one workflow, charts drawn here as inline
//! SVG, and forms for the actions (toggle, run now, retry, start a workflow). A login form
//! takes the token and starts a session (an HttpOnly, SameSite=Strict cookie); every form
//! carries the session's CSRF token.

use crate::api::{run_action, Params};
use crate::auth::{self, SESSION_COOKIE};
use crate::db::{self, Failure};
use crate::App;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write;
use std::sync::Arc;

/// Text safe inside HTML elements and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A JSON value as table text: strings as they are, timestamps shortened, null as "–".
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "–".into(),
        Value::String(s) if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') => esc(&s[..19].replace('T', " ")),
        Value::String(s) => esc(s),
        Value::Number(n) => n.as_f64().map(|f| if f.fract() == 0.0 { format!("{f:.0}") } else { format!("{f:.2}") }).unwrap_or_default(),
        other => esc(&other.to_string()),
    }
}

/// A section `id` titled `title`: a table of `rows` (one `<tr>` each from `row`) under the
/// `header` cells, or "none" when there are none.
pub(crate) fn table_or_none(body: &mut String, id: &str, title: &str, rows: &[Value], header: &str, row: impl Fn(&Value) -> String) {
    let _ = write!(body, "<section id={id}><h2>{title}</h2>");
    if rows.is_empty() {
        body.push_str("<p class=muted>none</p>");
    } else {
        let _ = write!(body, "<table><tr>{header}</tr>");
        rows.iter().for_each(|r| body.push_str(&row(r)));
        body.push_str("</table>");
    }
    body.push_str("</section>");
}

pub(crate) fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// An SVG bar per run, oldest on the left: height by duration, green when it succeeded.
pub fn duration_bars(runs: &[(f64, bool)]) -> String {
    let (width, height) = (180.0, 36.0);
    if runs.is_empty() {
        return "<span class=muted>no runs yet</span>".into();
    }
    let max = runs.iter().map(|r| r.0).fold(0.0_f64, f64::max).max(1e-3);
    let slot = width / runs.len().max(12) as f64;
    let mut svg = format!("<svg class=chart width={width} height={height} viewBox=\"0 0 {width} {height}\" role=img aria-label=\"run durations\">");
    for (i, (seconds, succeeded)) in runs.iter().enumerate() {
        let h = (seconds / max * (height - 2.0)).max(1.5);
        let color = if *succeeded { "#2e9d5b" } else { "#d64545" };
        let _ = write!(
            svg,
            "<rect x={:.1} y={:.1} width={:.1} height={h:.1} fill=\"{color}\"><title>{:.1} ms</title></rect>",
            i as f64 * slot,
            height - h,
            (slot - 1.0).max(1.0),
            seconds * 1000.0
        );
    }
    let longest = if max < 1.0 { format!("{:.0} ms", max * 1000.0) } else { format!("{max:.2} s") };
    let _ = write!(svg, "<text x={width} y=10 text-anchor=end class=axis>max {longest}</text></svg>");
    svg
}

/// An SVG sparkline of samples taken at regular intervals, oldest first.
pub fn sparkline(samples: &[f64]) -> String {
    let (width, height) = (180.0, 36.0);
    if samples.len() < 2 {
        return "<span class=muted>sampled every 30 min (job content_pipeline_metrics)</span>".into();
    }
    let step = (width - 2.0) / (samples.len() - 1) as f64;
    let max = samples.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let coords: Vec<String> = samples
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step + 1.0, height - 2.0 - v / max * (height - 6.0)))
        .collect();
    format!(
        "<svg class=chart width={width} height={height} viewBox=\"0 0 {width} {height}\" role=img aria-label=\"backlog\">\
         <polyline fill=none stroke=\"#3566c4\" stroke-width=1.5 points=\"{}\"/>\
         <text x={width} y=10 text-anchor=end class=axis>max {max:.0}</text></svg>",
        coords.join(" ")
    )
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}\
header h1{font-size:18px;margin:0}header a{color:#cfe0ff}main{padding:10px 20px;display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}\
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 12px;overflow-x:auto}\
h2{font-size:15px;margin:4px 0 8px}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #eef0f3;vertical-align:middle;white-space:nowrap}\
th{font-weight:600;color:#555;font-size:12px}.ok{color:#2e9d5b;font-weight:600}.bad{color:#d64545;font-weight:600}.muted{color:#888}\
.axis{font-size:9px;fill:#888}form{display:inline;margin:0}button{font-size:12px;padding:2px 8px;cursor:pointer}\
.notice{background:#fff7d6;border:1px solid #e8d27a;padding:6px 12px;margin:10px 20px 0;border-radius:4px}\
#jobs,#dead-letters,#decay,#cannibalization,#scores,#links{grid-column:1/-1}pre{white-space:pre-wrap;max-height:260px;overflow:auto;background:#f7f7f9;padding:6px;font-size:12px}input[type=url]{width:320px}";

fn status_class(status: &str) -> &'static str {
    match status {
        "healthy" | "succeeded" | "completed" | "active" => "ok",
        "failed" | "failing" | "down" | "stalled" | "dead" | "critical" => "bad",
        _ => "",
    }
}

pub(crate) fn page_shell(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}

fn login_page(message: Option<&str>) -> Html<String> {
    let message = message.map(|m| format!("<p class=bad>{}</p>", esc(m))).unwrap_or_default();
    page_shell(
        "pageperfect: sign in",
        &format!(
            "<header><h1>pageperfect</h1></header><main><section><h2>Sign in</h2>{message}\
             <form method=post action=/login><label>Token <input type=password name=token autocomplete=current-password autofocus></label> \
             <button type=submit>Sign in</button></form>\
             <p class=muted>The token is the cron secret this server checks (pageperfect.set_cron_secret).</p></section></main>"
        ),
    )
}

#[derive(Deserialize)]
pub struct PageQuery {
    workflow: Option<String>,
}

/// `GET /`: the dashboard, or the sign-in form.
pub async fn page(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<PageQuery>) -> Response {
    let app: &App = &app;
    signed_in(app, &headers, |csrf, notice| async move { render(app, &csrf, notice, &query).await }).await
}

/// The page `render` makes (given the session's CSRF token and its notice, if any) for a
/// signed-in session, else the sign-in form.
pub(crate) async fn signed_in<F, Fut>(app: &App, headers: &HeaderMap, render: F) -> Response
where
    F: FnOnce(String, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Html<String>, Failure>>,
{
    match app.auth.session(&app.pool, headers, &app.config.secret_name).await {
        Ok(Some(session)) => match render(session.csrf.clone(), app.auth.take_notice(headers)).await {
            Ok(html) => html.into_response(),
            Err(failure) => (failure.status, page_shell("pageperfect", &format!("<p class=bad>{}</p>", esc(&failure.message)))).into_response(),
        },
        Ok(None) => login_page(None).into_response(),
        Err(failure) => (failure.status, login_page(Some(&failure.message))).into_response(),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: a token that verifies starts a session.
pub async fn login(State(app): State<Arc<App>>, Form(form): Form<LoginForm>) -> Response {
    match app.auth.verify(&app.pool, &app.config.secret_name, form.token.trim()).await {
        Ok(true) => {
            let id = app.auth.start_session(form.token.trim());
            let cookie = format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Ok(false) => (StatusCode::UNAUTHORIZED, login_page(Some("That token is not valid."))).into_response(),
        Err(failure) => (failure.status, login_page(Some(&failure.message))).into_response(),
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: String,
    action: String,
    job: Option<String>,
    enable: Option<String>,
    id: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<LogoutForm>) -> Response {
    if let Ok(Some(session)) = app.auth.session(&app.pool, &headers, &app.config.secret_name).await {
        if auth::same(&form.csrf, &session.csrf) {
            if let Some(id) = auth::cookie(&headers, SESSION_COOKIE) {
                app.auth.end_session(id);
            }
        }
    }
    ([(header::SET_COOKIE, format!("{SESSION_COOKIE}=; Max-Age=0; Path=/"))], Redirect::to("/")).into_response()
}

/// `POST /ui/action`: a form's action, in a live session with its CSRF token; back to the page
/// with what happened.
pub async fn action(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<ActionForm>) -> Response {
    let session = match app.auth.session(&app.pool, &headers, &app.config.secret_name).await {
        Ok(Some(session)) => session,
        Ok(None) => return (StatusCode::UNAUTHORIZED, login_page(Some("Sign in first."))).into_response(),
        Err(failure) => return (failure.status, login_page(Some(&failure.message))).into_response(),
    };
    if !auth::same(&form.csrf, &session.csrf) {
        return (StatusCode::FORBIDDEN, page_shell("pageperfect", "<p class=bad>The form's CSRF token is not this session's.</p>")).into_response();
    }
    if app.config.read_only {
        return (StatusCode::FORBIDDEN, page_shell("pageperfect", "<p class=bad>The server is read-only.</p>")).into_response();
    }
    let params = Params::of(form.job.clone(), form.enable.clone(), form.id.clone(), form.url.clone());
    let mut target = String::from("/");
    let notice = match run_action(&app, &form.action, true, &params).await {
        Ok(data) => match form.action.as_str() {
            "trigger" => format!("Run {} of {} queued.", cell(&data["runid"]), form.job.unwrap_or_default()),
            "toggle" => cell(&data["message"]),
            "dead_letters" => format!("Dead letter {} is back in the queue.", form.id.unwrap_or_default()),
            "workflow" => {
                let job_id = cell(&data["job_id"]);
                target = format!("/?workflow={}", percent_encode(&job_id));
                format!("Workflow {job_id} started.")
            }
            _ => "Done.".into(),
        },
        Err(failure) => format!("{} failed: {}", form.action, failure.message),
    };
    app.auth.set_notice(&headers, notice);
    Redirect::to(&target).into_response()
}

pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=hidden name={name} value=\"{}\">", esc(value))
}

/// A one-button form posting `action` with `fields`.
fn button(csrf: &str, action: &str, fields: &[(&str, &str)], label: &str, read_only: bool) -> String {
    if read_only {
        return String::new();
    }
    let mut form = format!("<form method=post action=/ui/action>{}{}", hidden("csrf", csrf), hidden("action", action));
    for (name, value) in fields {
        form.push_str(&hidden(name, value));
    }
    let _ = write!(form, "<button type=submit>{}</button></form>", esc(label));
    form
}

/// The pages' header (the role, the time, links to both pages, sign out) and the notice.
pub(crate) async fn header(app: &App, csrf: &str, notice: Option<&str>) -> Result<String, Failure> {
    let pool = &app.pool;
    let whoami = db::one_value(pool, "SELECT to_jsonb(current_user::text)", &[]).await?;
    let mut header = format!(
        "<header><h1>pageperfect</h1><a href=/>Dashboard</a><a href=/insights>SEO insights</a>\
         <span>as role <b>{}</b></span>{}<span class=muted>{}</span>\
         <form method=post action=/logout style=\"margin-left:auto\">{}<button type=submit>Sign out</button></form></header>",
        cell(&whoami),
        if app.config.read_only { "<span>read-only</span>" } else { "" },
        cell(&db::one_value(pool, "SELECT to_jsonb(now()::timestamptz(0)::text)", &[]).await?),
        hidden("csrf", csrf)
    );
    if let Some(notice) = notice {
        let _ = write!(header, "<div class=notice id=notice>{}</div>", esc(notice));
    }
    Ok(header)
}

async fn render(app: &App, csrf: &str, notice: Option<String>, query: &PageQuery) -> Result<Html<String>, Failure> {
    let pool = &app.pool;
    let read_only = app.config.read_only;
    let mut body = header(app, csrf, notice.as_deref()).await?;
    body.push_str("<main>");

    // Workers.
    let workers = db::rows(pool, "SELECT * FROM pageperfect.worker_health()", &[]).await?;
    body.push_str("<section id=workers><h2>Workers</h2><table><tr><th>worker</th><th>status</th><th>pid</th><th>last heartbeat</th></tr>");
    for w in list(&workers) {
        let status = w["status"].as_str().unwrap_or("");
        let _ = write!(
            body,
            "<tr><td>{}</td><td class={}>{}</td><td>{}</td><td>{}</td></tr>",
            cell(&w["component"]), status_class(status), esc(status), cell(&w["pid"]), cell(&w["last_heartbeat"])
        );
    }
    body.push_str("</table></section>");

    // Cron jobs.
    let jobs = db::rows(pool, "SELECT * FROM pageperfect.manage_cron_jobs()", &[]).await?;
    let health = db::rows(pool, "SELECT * FROM pageperfect.get_scheduler_health()", &[]).await?;
    body.push_str(
        "<section id=jobs><h2>Cron jobs</h2><table><tr><th>job</th><th>schedule</th><th>next run</th><th>last run</th>\
         <th>last status</th><th>success (24 h)</th><th>durations</th><th></th></tr>",
    );
    for job in list(&jobs) {
        let name = job["job_name"].as_str().map(str::to_string);
        let label = name.clone().unwrap_or_else(|| format!("job {}", cell(&job["jobid"])));
        let rate = list(&health).iter().find(|h| h["component"].as_str() == Some(label.as_str())).map(|h| &h["success_rate"]);
        let chart = match &name {
            Some(name) => {
                let runs = db::rows(pool, "SELECT * FROM pageperfect.job_runs($1::text, 30)", &[name]).await?;
                let mut points: Vec<(f64, bool)> = list(&runs)
                    .iter()
                    .filter_map(|r| Some((r["duration_seconds"].as_f64()?, r["status"].as_str() == Some("succeeded"))))
                    .collect();
                points.reverse();
                duration_bars(&points)
            }
            None => String::new(),
        };
        let status = job["last_status"].as_str().unwrap_or("");
        let active = job["active"].as_bool() == Some(true);
        let actions = match &name {
            Some(n) => format!(
                "{}{}",
                button(csrf, "trigger", &[("job", n)], "Run now", read_only),
                button(csrf, "toggle", &[("job", n), ("enable", if active { "false" } else { "true" })], if active { "Disable" } else { "Enable" }, read_only)
            ),
            None => String::new(),
        };
        let _ = write!(
            body,
            "<tr id=\"job-{}\"><td>{}{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class={}>{}</td><td>{}</td><td>{chart}</td><td>{actions}</td></tr>",
            esc(&label), esc(&label), if active { "" } else { " <span class=muted>(disabled)</span>" },
            cell(&job["schedule"]), cell(&job["next_run"]), cell(&job["last_run"]), status_class(status),
            if status.is_empty() { "never run".into() } else { esc(status) },
            rate.map(|r| if r.is_null() { "–".to_string() } else { format!("{}%", cell(r)) }).unwrap_or_else(|| "–".into())
        );
    }
    body.push_str("</table></section>");

    // Queues.
    let queues = db::rows(pool, "SELECT * FROM pageperfect.metrics_all()", &[]).await?;
    let history = db::rows(
        pool,
        "SELECT queue_name, depth FROM pageperfect.queue_backlog_history
          WHERE collected_at > now() - interval '6 hours' ORDER BY collected_at",
        &[],
    )
    .await?;
    body.push_str("<section id=queues><h2>Queues</h2><table><tr><th>queue</th><th>messages</th><th>visible</th><th>oldest (s)</th><th>sent</th><th>backlog, 6 h</th></tr>");
    for q in list(&queues) {
        let name = q["queue_name"].as_str().unwrap_or("");
        let samples: Vec<f64> =
            list(&history).iter().filter(|h| h["queue_name"].as_str() == Some(name)).filter_map(|h| h["depth"].as_f64()).collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name), cell(&q["queue_length"]), cell(&q["queue_visible_length"]), cell(&q["oldest_msg_age_sec"]),
            cell(&q["total_messages"]), sparkline(&samples)
        );
    }
    body.push_str("</table></section>");

    // Pipeline stages.
    let stages = db::rows(pool, "SELECT * FROM pageperfect.processor_status()", &[]).await?;
    let insights = db::rows(pool, "SELECT * FROM pageperfect.execution_insights(now() - interval '1 hour', now())", &[]).await?;
    body.push_str(
        "<section id=stages><h2>Pipeline stages (last hour)</h2><table><tr><th>stage</th><th>queued</th><th>processing</th>\
         <th>retrying</th><th>dead</th><th>done/min</th><th>p50 ms</th><th>p95 ms</th><th>failed</th></tr>",
    );
    for s in list(&stages) {
        let i = list(&insights).iter().find(|i| i["stage"] == s["stage"]).cloned().unwrap_or(Value::Null);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            cell(&s["stage"]), cell(&s["queued"]), cell(&s["processing"]), cell(&s["waiting_retry"]), cell(&s["dead"]),
            cell(&i["throughput_per_minute"]), cell(&i["latency_p50_ms"]), cell(&i["latency_p95_ms"]), cell(&i["failed"])
        );
    }
    body.push_str("</table></section>");

    // Alerts.
    let alerts = db::rows(pool, "SELECT * FROM pageperfect.open_alerts ORDER BY created_at DESC", &[]).await?;
    table_or_none(&mut body, "alerts", "Open alerts", list(&alerts), "<th>severity</th><th>alert</th><th>since</th>", |a| {
        let severity = a["severity"].as_str().unwrap_or("");
        format!("<tr><td class={}>{}</td><td>{}</td><td>{}</td></tr>", status_class(severity), esc(severity), cell(&a["message"]), cell(&a["created_at"]))
    });

    // Dead letters.
    let letters = db::rows(pool, "SELECT * FROM pageperfect.list_dead_letters(false, 20)", &[]).await?;
    let header = "<th>id</th><th>url / queue</th><th>stage</th><th>error</th><th>when</th><th></th>";
    table_or_none(&mut body, "dead-letters", "Dead letters", list(&letters), header, |d| {
        let id = cell(&d["id"]);
        let target = if d["url"].is_null() { cell(&d["queue"]) } else { cell(&d["url"]) };
        let error = if d["error"].is_null() { cell(&d["reason"]) } else { cell(&d["error"]) };
        format!(
            "<tr id=\"dead-letter-{id}\"><td>{id}</td><td>{target}</td><td>{}</td><td>{error}</td><td>{}</td><td>{}</td></tr>",
            cell(&d["stage"]), cell(&d["routed_at"]), button(csrf, "dead_letters", &[("id", &id)], "Retry", read_only)
        )
    });

    // One workflow: the one asked for, else the latest.
    let workflow_id = match &query.workflow {
        Some(id) => Value::String(id.clone()),
        None => db::one_value(pool, "SELECT to_jsonb((SELECT job_id FROM pageperfect.v_job_status ORDER BY created_at DESC LIMIT 1))", &[]).await?,
    };
    body.push_str("<section id=workflow><h2>Workflow</h2>");
    if !read_only {
        let _ = write!(
            body,
            "<form method=post action=/ui/action>{}{}<input type=url name=url placeholder=\"https://example.com/page\" required> \
             <button type=submit>Start workflow</button></form>",
            hidden("csrf", csrf), hidden("action", "workflow")
        );
    }
    if let Some(id) = workflow_id.as_str() {
        match db::one_value(pool, "SELECT pageperfect.workflow_detail($1::text::uuid)", &[id]).await {
            Ok(w) => {
                let status = w["status"].as_str().unwrap_or("");
                let _ = write!(
                    body,
                    "<p>{} <span class={}>{}</span> <span class=muted>{}</span></p><table><tr><th>stage</th><th>status</th><th>attempts</th><th>seconds</th><th>last error</th></tr>",
                    cell(&w["url"]), status_class(status), esc(status), cell(&w["job_id"])
                );
                for s in list(&w["stages"]) {
                    let st = s["status"].as_str().unwrap_or("");
                    let _ = write!(
                        body,
                        "<tr><td>{}</td><td class={}>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        cell(&s["stage"]), status_class(st), esc(st), cell(&s["attempts"]), cell(&s["duration_seconds"]), cell(&s["last_error"])
                    );
                }
                body.push_str("</table>");
                if let Some(text) = w["draft"]["text"].as_str() {
                    let _ = write!(
                        body,
                        "<h2>Draft <span class=muted>({}; content score {} → {})</span></h2><pre>{}</pre>",
                        cell(&w["draft"]["model"]),
                        cell(&w["draft"]["score_before"]),
                        cell(&w["draft"]["score_after"]),
                        esc(text)
                    );
                }
            }
            Err(failure) => {
                let _ = write!(body, "<p class=bad>{}</p>", esc(&failure.message));
            }
        }
    } else {
        body.push_str("<p class=muted>no workflow yet</p>");
    }
    body.push_str("</section></main>");
    Ok(page_shell("pageperfect", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_charts_are_svg() {
        assert_eq!(esc("<a href=\"x\">'&"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;");
        let bars = duration_bars(&[(0.5, true), (1.0, false)]);
        assert_eq!(bars.matches("<rect").count(), 2);
        assert!(bars.contains("#d64545"));
        let line = sparkline(&[1.0, 3.0, 0.0]);
        assert!(line.contains("<polyline") && line.matches(',').count() == 3, "{line}");
        assert_eq!(percent_encode("Run 5 of a b."), "Run%205%20of%20a%20b.");
    }
}

//! `/metrics`: Prometheus's text exposition format (version 0.0.4). The samples come from
//! `pageperfect.metric_samples()` as the server's role (so each deployment sees its own jobs and
//! queues); this module names each family's type and help and writes them out, beside the
//! server's own count of HTTP answers.

use crate::db;
use crate::App;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Every family: name, type, help. Samples of other names are not written.
const FAMILIES: [(&str, &str, &str); 14] = [
    ("pageperfect_cron_runs_total", "counter", "Finished cron runs in the kept history (job_run_details), by job and status."),
    ("pageperfect_cron_run_duration_seconds", "histogram", "Duration of finished cron runs (succeeded or failed) in the kept history."),
    ("pageperfect_cron_lag_seconds", "gauge", "Seconds from due time to start of each job's latest run."),
    ("pageperfect_cron_job_active", "gauge", "1 when the cron job is active, 0 when it is disabled."),
    ("pageperfect_queue_messages", "gauge", "Messages in each queue: visible (ready to read) or invisible (read, within their visibility timeout, or delayed)."),
    ("pageperfect_queue_sent_messages_total", "counter", "Messages ever sent to each queue."),
    ("pageperfect_queue_oldest_message_age_seconds", "gauge", "Age of the oldest message in each queue (0 when empty)."),
    ("pageperfect_stage_attempts_total", "counter", "Pipeline stage attempts that ended, by stage and outcome (completed or failed), in the kept job events."),
    ("pageperfect_stage_work_items", "gauge", "Pipeline stages by state: queued, processing, waiting_retry or dead."),
    ("pageperfect_dead_letters", "gauge", "Dead letters not retried."),
    ("pageperfect_worker_up", "gauge", "1 when the background worker is healthy (live process, fresh heartbeat)."),
    ("pageperfect_worker_heartbeat_age_seconds", "gauge", "Seconds since each background worker's last heartbeat."),
    ("pageperfect_alerts_open", "gauge", "Open monitoring alerts the server's role may see, by severity."),
    ("pageperfect_http_requests_total", "counter", "HTTP requests this pageperfect-web process answered, by status code."),
];

/// The family a sample belongs to (a histogram's `_bucket`, `_sum` and `_count` belong to it).
fn family_of(metric: &str) -> Option<&'static str> {
    FAMILIES.iter().map(|(name, kind, _)| (*name, *kind)).find_map(|(name, kind)| {
        let matches = metric == name
            || (kind == "histogram" && ["_bucket", "_sum", "_count"].iter().any(|suffix| metric.strip_suffix(suffix) == Some(name)));
        matches.then_some(name)
    })
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// One sample line: `name{label="value",…} value`.
fn sample_line(out: &mut String, metric: &str, labels: &serde_json::Map<String, Value>, value: f64) {
    out.push_str(metric);
    if !labels.is_empty() {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()).as_str())))
            .collect();
        let _ = write!(out, "{{{}}}", pairs.join(","));
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// One sample line to write: the metric's name, its labels and its value.
type Sample<'a> = (&'a str, &'a serde_json::Map<String, Value>, f64);

/// The exposition text of `samples` (rows of metric, labels, value) and the HTTP counts.
pub fn exposition(samples: &[Value], http_requests: &BTreeMap<u16, u64>) -> String {
    let mut by_family: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let empty = serde_json::Map::new();
    for sample in samples {
        let (Some(metric), Some(value)) = (sample["metric"].as_str(), sample["value"].as_f64()) else { continue };
        let Some(family) = family_of(metric) else { continue };
        by_family.entry(family).or_default().push((metric, sample["labels"].as_object().unwrap_or(&empty), value));
    }
    let mut out = String::new();
    for (name, kind, help) in FAMILIES {
        let http;
        let lines = if name == "pageperfect_http_requests_total" {
            http = http_requests
                .iter()
                .map(|(status, n)| {
                    let mut labels = serde_json::Map::new();
                    labels.insert("status".into(), Value::String(status.to_string()));
                    (labels, *n as f64)
                })
                .collect::<Vec<_>>();
            http.iter().map(|(labels, n)| (name, labels, *n)).collect()
        } else {
            by_family.remove(name).unwrap_or_default()
        };
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (metric, labels, value) in lines {
            sample_line(&mut out, metric, labels, value);
        }
    }
    out
}

/// `GET /metrics` with a bearer token.
pub async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(failure) = app.auth.require_bearer(&app.pool, &headers, &app.config.secret_name).await {
        return failure.into_response();
    }
    let samples = match db::rows(&app.pool, "SELECT metric, labels, value FROM pageperfect.metric_samples()", &[]).await {
        Ok(Value::Array(samples)) => samples,
        Ok(_) => Vec::new(),
        Err(failure) => return failure.into_response(),
    };
    let http_requests = app.http_requests.lock().unwrap().clone();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], exposition(&samples, &http_requests)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_parts_belong_to_their_family_and_labels_are_escaped() {
        assert_eq!(family_of("pageperfect_cron_run_duration_seconds_bucket"), Some("pageperfect_cron_run_duration_seconds"));
        assert_eq!(family_of("pageperfect_cron_runs_total_sum"), None);
        let samples = vec![serde_json::json!({"metric": "pageperfect_cron_runs_total", "labels": {"job": "a\"b\\c"}, "value": 2.0})];
        let text = exposition(&samples, &BTreeMap::from([(200, 3)]));
        assert!(text.contains("pageperfect_cron_runs_total{job=\"a\\\"b\\\\c\"} 2\n"), "{text}");
        assert!(text.contains("pageperfect_http_requests_total{status=\"200\"} 3\n"), "{text}");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(0.25), "0.25");
    }
}

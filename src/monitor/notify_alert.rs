//! The `notify_alert` stage: posts one new monitoring alert to the job's URL (the
//! `alert_webhook_url` trigger_monitoring saw) as Slack-style `{"text": …}` JSON, and marks the
//! alert notified. A failed post is retried like any stage; a refused one ends in the dead letters.
//! While no pipeline worker runs, the scheduler posts them instead (`fallback`).

use crate::http::client::{check_status, HttpClient, HttpConfig, Request};
use crate::http::error::HttpError;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

const POST_TIMEOUT: Duration = Duration::from_secs(15);

pub struct NotifyAlert;

pub struct Alert {
    id: i64,
    text: String,
}

/// The message a chat channel shows: severity, what is wrong, where, and since when.
pub fn alert_text(severity: &str, message: &str, database: &str, opened_at: &str) -> String {
    let marker = match severity {
        "critical" => ":rotating_light:",
        "warning" => ":warning:",
        _ => ":information_source:",
    };
    format!("{marker} *pageperfect {severity}* on database `{database}`: {message} (since {opened_at})")
}

impl Stage for NotifyAlert {
    const NAME: &'static str = "notify_alert";
    type Input = Alert;
    type Output = i64;

    fn prepare(&self, work: &Work) -> Result<Alert, StageError> {
        let id = work.options["alert_id"]
            .as_i64()
            .ok_or_else(|| StageError::permanent(format!("the job's alert_id is not a number: {}", work.options["alert_id"])))?;
        let text = read_alert_text(id)?.ok_or_else(|| StageError::permanent(format!("monitoring alert {id} no longer exists")))?;
        Ok(Alert { id, text })
    }

    fn run(&self, work: &Work, alert: Alert) -> impl Future<Output = Result<i64, StageError>> + Send + 'static {
        let url = work.url.clone();
        async move {
            post_alert(&url, &alert.text, POST_TIMEOUT).await?;
            Ok(alert.id)
        }
    }

    fn store(&self, _work: &Work, alert_id: i64) -> Result<Value, StageError> {
        mark_notified(alert_id)?;
        Ok(json!({ "alert_id": alert_id, "notified": true }))
    }
}

/// The text of alert `id` as the webhook gets it; `None` when the alert is gone (SPI).
pub fn read_alert_text(id: i64) -> Result<Option<String>, pgrx::spi::Error> {
    let row = Spi::get_three_with_args::<String, String, String>(
        "SELECT a.severity, a.message, to_char(a.created_at, 'YYYY-MM-DD HH24:MI:SS TZ')
           FROM (SELECT) one LEFT JOIN pageperfect.monitoring_alerts a ON a.id = $1",
        &[id.into()],
    )?;
    let (Some(severity), Some(message), Some(opened_at)) = row else { return Ok(None) };
    let database = Spi::get_one::<String>("SELECT current_database()::text")?.unwrap_or_default();
    Ok(Some(alert_text(&severity, &message, &database, &opened_at)))
}

/// Posts `text` to the webhook at `url` as Slack-style JSON.
pub async fn post_alert(url: &str, text: &str, timeout: Duration) -> Result<(), HttpError> {
    // The webhook is a superuser's setting, often an internal relay: no SSRF guard.
    let client = HttpClient::new(HttpConfig { timeout, allow_private: true, ..HttpConfig::default() })?;
    check_status(client.send(Request::post_json(url, &json!({ "text": text }))).await?)?;
    Ok(())
}

/// Records that alert `id` reached the webhook (SPI).
pub fn mark_notified(id: i64) -> Result<(), pgrx::spi::Error> {
    Spi::run_with_args(
        "UPDATE pageperfect.monitoring_alerts SET notified_at = now(), notify_error = NULL WHERE id = $1",
        &[id.into()],
    )
}

#[cfg(test)]
mod tests {
    use super::alert_text;

    #[test]
    fn the_text_leads_with_the_severity_and_names_the_database() {
        assert_eq!(
            alert_text("critical", "Worker scheduler is down", "shop", "2026-11-23 10:00:00 UTC"),
            ":rotating_light: *pageperfect critical* on database `shop`: Worker scheduler is down (since 2026-11-23 10:00:00 UTC)"
        );
        assert!(alert_text("warning", "m", "d", "t").starts_with(":warning: *pageperfect warning*"));
        assert!(alert_text("info", "m", "d", "t").starts_with(":information_source:"));
    }
}

//! Alerts reach the webhook even while no pipeline worker runs (the very thing an alert may be
//! about): the scheduler's worker runs this duty beside its own, and every few seconds, when no
//! pipeline worker is up, it posts the alerts whose `notify_alert` job has waited, then cancels
//! that job. With workers up it does nothing: they deliver. A post that fails leaves the job
//! for the workers to deliver when they return (and this duty tries again).

use super::notify_alert::{mark_notified, post_alert, read_alert_text};
use crate::worker::{in_transaction, query_json, Duty};
use pgrx::prelude::*;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// How often it looks, and how long a `notify_alert` job waits for a worker before it is taken.
const CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// At most this many posts per look, each of at most `POST_TIMEOUT`: the scheduler's own work
/// waits meanwhile, so both are short.
const POSTS_PER_CHECK: i64 = 3;
const POST_TIMEOUT: Duration = Duration::from_secs(3);

pub struct AlertFallback {
    next_check: Instant,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Deserialize)]
struct Waiting {
    job_id: String,
    url: String,
    alert_id: i64,
}

impl Default for AlertFallback {
    fn default() -> AlertFallback {
        AlertFallback { next_check: Instant::now() + CHECK_INTERVAL, runtime: None }
    }
}

impl AlertFallback {
    /// The alerts waiting for a pipeline worker when none runs.
    fn waiting() -> Result<Vec<Waiting>, String> {
        in_transaction(|| {
            query_json(
                "SELECT coalesce(jsonb_agg(w), '[]') FROM (
                     SELECT s.job_id, j.url, (j.options->>'alert_id')::bigint AS alert_id
                       FROM pageperfect.job_stages s JOIN pageperfect.jobs j ON j.id = s.job_id
                      WHERE s.stage = 'notify_alert' AND s.status IN ('queued', 'failed')
                        AND j.created_at < now() - make_interval(secs => ($1 ->> 'waited')::float8)
                        AND NOT pageperfect.pipeline_workers_up()
                      ORDER BY j.created_at LIMIT ($1 ->> 'limit')::int) w",
                Some(serde_json::json!({ "waited": CHECK_INTERVAL.as_secs_f64(), "limit": POSTS_PER_CHECK })),
            )
        })
    }

    fn deliver(&mut self, alert: &Waiting) -> Result<(), String> {
        let Some(text) = in_transaction(|| read_alert_text(alert.alert_id).map_err(|e| e.to_string()))? else {
            return Ok(());
        };
        let runtime = match &self.runtime {
            Some(runtime) => runtime,
            None => self.runtime.insert(
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?,
            ),
        };
        // No transaction is open while it waits on the network.
        runtime.block_on(post_alert(&alert.url, &text, POST_TIMEOUT)).map_err(|e| e.to_string())?;
        in_transaction(|| {
            mark_notified(alert.alert_id).map_err(|e| e.to_string())?;
            Spi::run_with_args(
                "SELECT pageperfect.log_job_event($1::uuid, 'notify_alert', 'posted_by_scheduler',
                                                  'no pipeline worker ran: the scheduler posted the alert; the job is cancelled')",
                &[alert.job_id.as_str().into()],
            )
            .and_then(|_| Spi::run_with_args("SELECT pageperfect.cancel_job_stages($1::uuid)", &[alert.job_id.as_str().into()]))
            .map_err(|e| e.to_string())
        })
    }
}

impl Duty for AlertFallback {
    fn tick(&mut self) -> Duration {
        let now = Instant::now();
        if now >= self.next_check {
            self.next_check = now + CHECK_INTERVAL;
            match AlertFallback::waiting() {
                Ok(waiting) => {
                    for alert in &waiting {
                        match self.deliver(alert) {
                            Ok(()) => log!("pageperfect scheduler: no pipeline worker runs, so it posted alert {} itself", alert.alert_id),
                            Err(e) => warning!("pageperfect scheduler: could not post alert {} (the pipeline workers will): {e}", alert.alert_id),
                        }
                    }
                }
                Err(e) => warning!("pageperfect scheduler: could not look for undelivered alerts: {e}"),
            }
        }
        self.next_check.saturating_duration_since(Instant::now())
    }

    fn busy(&self) -> bool {
        false
    }
}

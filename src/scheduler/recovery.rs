//! What the scheduler does with the runs it finds unfinished when it (re)starts: after a crash,
//! a restart of the server or its own process, or a promotion of this server from a standby.
//! Runs a live runner still holds are adopted, runs queued since the server started that no
//! runner took wait again, and every other one is failed, as pg_cron does ("server restarted").

use super::from_pg_micros;
use super::run_store::{self, Run, RunStatus, RunUpdate};
use super::slots::{Shared, SlotState};
use crate::worker::query_json;
use chrono::Utc;
use serde::Deserialize;
use std::sync::atomic::Ordering;

/// What became of an unfinished run.
pub enum Recovered {
    /// A live runner still holds the run (slot index).
    Held(usize, Run),
    /// Queued since the server started and never handed out: it waits again.
    Queued(Run),
    /// Recorded failed (the server restarted, or the primary changed): retried if its job allows.
    Failed(Run),
}

impl Recovered {
    pub fn run(&self) -> &Run {
        match self {
            Recovered::Held(_, run) | Recovered::Queued(run) | Recovered::Failed(run) => run,
        }
    }
}

/// Sorts the unfinished runs and writes the failed ones (in the caller's transaction).
pub fn recover(shared: &Shared) -> Result<Vec<Recovered>, String> {
    let born = from_pg_micros(shared.initialized_at.load(Ordering::Acquire));
    let unfinished = run_store::unfinished()?;
    let (promoted, reason) = timeline_change()?;
    let mut recovered = Vec::new();
    let mut failed = Vec::new();
    for run_store::Unfinished { run, never_started } in unfinished {
        let held = shared.slots().iter().position(|slot| {
            matches!(slot.state(), SlotState::Assigned | SlotState::Running | SlotState::Done | SlotState::DoneExited)
                && slot.runid.load(Ordering::Acquire) == run.runid
        });
        if let Some(index) = held {
            recovered.push(Recovered::Held(index, run));
        } else if never_started && run.due_time >= born && !promoted || run.due_time > Utc::now() {
            // A run queued on the old primary may have started there after the last WAL
            // this server received: only one due in the future surely has not.
            recovered.push(Recovered::Queued(run));
        } else {
            failed.push(RunUpdate { message: Some(reason.clone()), end_time: Some(Utc::now()), ..RunUpdate::to(run.runid, RunStatus::Failed) });
            recovered.push(Recovered::Failed(run));
        }
    }
    let written = run_store::write(&failed)?;
    if written.len() < failed.len() {
        return Err("a run to recover is locked by another session".to_string());
    }
    Ok(recovered)
}

/// Records the WAL timeline the scheduler starts on, and says whether this server was promoted
/// since the last start (a higher timeline), with the message for the runs it fails.
fn timeline_change() -> Result<(bool, String), String> {
    #[derive(Deserialize)]
    struct Timeline {
        current: i32,
        recorded: Option<i32>,
    }
    let timeline: Timeline = query_json(
        "WITH t AS (SELECT ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int AS current),
              previous AS (SELECT s.timeline FROM pageperfect.scheduler_state s),
              kept AS (INSERT INTO pageperfect.scheduler_state (timeline) SELECT current FROM t
                       ON CONFLICT (singleton) DO UPDATE SET timeline = excluded.timeline)
         SELECT jsonb_build_object('current', t.current, 'recorded', (SELECT timeline FROM previous)) FROM t",
        None,
    )?;
    Ok(match timeline.recorded {
        Some(recorded) if recorded != timeline.current => (
            true,
            format!("the primary changed (this server was promoted: timeline {recorded} to {}); the run was in progress on the old primary", timeline.current),
        ),
        _ => (false, "server restarted".to_string()),
    })
}

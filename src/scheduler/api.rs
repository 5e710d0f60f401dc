//! pg_cron's SQL API (`schedule`, `schedule_in_database`, `unschedule`, `alter_job`) and
//! pageperfect's additions (`alter_job_policy`, `run_job_now`, `toggle_cron_job`), with pg_cron's
//! permission rules and error messages. The same C symbols also back the `cron.*` functions.
//!
//! They run as the caller, decide what the caller may do (own jobs only; only a superuser acts
//! for another role), and then write the tables as the bootstrap superuser, as pg_cron writes
//! as the extension owner: ordinary roles have no write privilege on the tables.

use super::parse_schedule;
use super::run_store::{self, RunStatus};
use super::slots;
use crate::wakeup::{self, wake_at_commit, Wake};
use crate::{as_owner, current_user, invalid_parameter};
use pgrx::datum::{DatumWithOid, Interval};
use pgrx::prelude::*;


fn is_superuser() -> bool {
    unsafe { pg_sys::superuser() }
}

/// The first column of the first row `sql` returns, or `None` when it returns no row.
fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Option<T> {
    Spi::connect_mut(|client| {
        let table = client.update(sql, Some(1), args)?;
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get_one::<T>()
        }
    })
    .unwrap_or_else(|e: pgrx::spi::Error| error!("{e}"))
}

/// pg_cron's checks on the role a job runs as and the database it runs in, in pg_cron's order:
/// the role exists and may log in, it is not a superuser while `enable_superuser_jobs` is off,
/// the database exists and the role may connect to it.
fn check_role_and_database(username: &str, database: &str) {
    check_role(username);
    check_database(username, database);
}

fn check_role(username: &str) {
    let can_login = one::<bool>("SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1", &[username.into()])
        .unwrap_or_else(|| error!("role \"{username}\" does not exist"));
    if !can_login {
        #[rustfmt::skip]
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("role \"{username}\" can not log in"),
            "Jobs may only be run by roles that have the LOGIN attribute."
        );
    }
    if !crate::config::ENABLE_SUPERUSER_JOBS.get()
        && one::<bool>("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1", &[username.into()]).unwrap_or(false)
    {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "cannot schedule jobs as superuser",
            "Scheduling jobs as superuser is disallowed when pageperfect.enable_superuser_jobs is set to off."
        );
    }
}

fn check_database(username: &str, database: &str) {
    let can_connect = one::<bool>(
        "SELECT pg_catalog.has_database_privilege($1, d.oid, 'CONNECT') FROM pg_catalog.pg_database d WHERE d.datname = $2",
        &[username.into(), database.into()],
    );
    match can_connect {
        None => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist")
            );
        }
        Some(false) => error!("User {username} does not have CONNECT privilege on {database}"),
        Some(true) => {}
    }
}

fn require<T>(value: Option<T>, what: &str) -> T {
    value.unwrap_or_else(|| error!("{what} can not be NULL"))
}

/// Creates a job, or updates the caller's job of the same name (schedule, command, database).
fn schedule_job(
    job_name: Option<&str>,
    schedule: &str,
    command: &str,
    database: Option<&str>,
    username: Option<&str>,
    active: bool,
) -> i64 {
    parse_schedule(schedule);
    if username.is_some() && !is_superuser() {
        error!("must be superuser to create a job for another role");
    }
    let username = username.map(str::to_string).unwrap_or_else(current_user);
    let database = database
        .map(str::to_string)
        .unwrap_or_else(|| one::<String>("SELECT pg_catalog.current_database()::text", &[]).unwrap_or_default());
    check_role_and_database(&username, &database);
    let jobid = as_owner(|| {
        one::<i64>(
            "INSERT INTO pageperfect.job (jobname, schedule, command, database, username, active)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT ON CONSTRAINT jobname_username_uniq DO UPDATE
                SET schedule = excluded.schedule, command = excluded.command, database = excluded.database
             RETURNING jobid",
            &[job_name.into(), schedule.into(), command.into(), database.into(), username.into(), active.into()],
        )
    });
    wake_at_commit(Wake::Scheduler);
    jobid.expect("INSERT … RETURNING returns the job")
}

/// Runs `sql` as the owner with `$1` = `job_name` and `$2` = the caller (then `extra` as `$3`…),
/// so it touches only the caller's job of that name, and wakes the scheduler at commit.
/// The first column of its first row, or `None` when the caller has no such job.
fn on_callers_job<T: FromDatum + IntoDatum>(job_name: &str, sql: &str, extra: Vec<DatumWithOid>) -> Option<T> {
    let mut args: Vec<DatumWithOid> = vec![job_name.into(), current_user().into()];
    args.extend(extra);
    let result = as_owner(|| one::<T>(sql, &args));
    wake_at_commit(Wake::Scheduler);
    result
}

/// Raises pg_cron's error for a job the caller cannot see.
fn no_such_job(job: impl std::fmt::Display) -> ! {
    error!("could not find valid entry for job {job}")
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// `cron.schedule(schedule, command)`: a job without a name.
    #[pg_extern(strict, name = "schedule")]
    fn schedule_unnamed(schedule: &str, command: &str) -> i64 {
        crate::refuse_if_read_only("cron.schedule()");
        schedule_job(None, schedule, command, None, None, true)
    }

    /// `cron.schedule(job_name, schedule, command)`: the same name again updates that job.
    #[pg_extern(name = "schedule")]
    fn schedule_named(job_name: Option<&str>, schedule: Option<&str>, command: Option<&str>) -> i64 {
        crate::refuse_if_read_only("cron.schedule()");
        let job_name = require(job_name, "job_name");
        schedule_job(Some(job_name), require(schedule, "schedule"), require(command, "command"), None, None, true)
    }

    /// `cron.schedule_in_database`: runs the command in another database, and (superusers
    /// only) as another role.
    #[pg_extern]
    fn schedule_in_database(
        job_name: Option<&str>,
        schedule: Option<&str>,
        command: Option<&str>,
        database: Option<&str>,
        username: default!(Option<&str>, "NULL"),
        active: default!(Option<bool>, true),
    ) -> i64 {
        crate::refuse_if_read_only("cron.schedule_in_database()");
        let job_name = require(job_name, "job_name");
        let database = require(database, "database");
        schedule_job(
            Some(job_name),
            require(schedule, "schedule"),
            require(command, "command"),
            Some(database),
            username,
            active.unwrap_or(true),
        )
    }

    /// `cron.unschedule(job_id)`: the owner, or a role with DELETE on the job table.
    #[pg_extern(strict, name = "unschedule")]
    fn unschedule_by_id(job_id: i64) -> bool {
        crate::refuse_if_read_only("cron.unschedule()");
        let owner = as_owner(|| one::<String>("SELECT username FROM pageperfect.job WHERE jobid = $1", &[job_id.into()]))
            .unwrap_or_else(|| no_such_job(job_id));
        let caller = unsafe { pg_sys::GetUserId() };
        let may_delete = owner == current_user()
            || as_owner(|| {
                one::<bool>("SELECT pg_catalog.has_table_privilege($1, 'pageperfect.job'::regclass, 'DELETE')", &[caller.into()])
            })
            .unwrap_or(false);
        if !may_delete {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "permission denied for table job");
        }
        as_owner(|| Spi::run_with_args("DELETE FROM pageperfect.job WHERE jobid = $1", &[job_id.into()]))
            .unwrap_or_else(|e| error!("{e}"));
        wake_at_commit(Wake::Scheduler);
        true
    }

    /// `cron.unschedule(job_name)`: the caller's job of that name.
    #[pg_extern(strict, name = "unschedule")]
    fn unschedule_by_name(job_name: &str) -> bool {
        crate::refuse_if_read_only("cron.unschedule()");
        on_callers_job::<i64>(job_name, "DELETE FROM pageperfect.job WHERE jobname = $1 AND username = $2 RETURNING jobid", vec![])
            .unwrap_or_else(|| no_such_job(format!("'{job_name}'")));
        true
    }

    /// `cron.alter_job`: changes what is not NULL; only a superuser changes the role.
    #[pg_extern]
    fn alter_job(
        job_id: Option<i64>,
        schedule: default!(Option<&str>, "NULL"),
        command: default!(Option<&str>, "NULL"),
        database: default!(Option<&str>, "NULL"),
        username: default!(Option<&str>, "NULL"),
        active: default!(Option<bool>, "NULL"),
    ) {
        crate::refuse_if_read_only("cron.alter_job()");
        let job_id = require(job_id, "job_id");
        let caller = current_user();
        let superuser = is_superuser();
        // The job, if the caller may alter it; its absence is reported after the checks of
        // what was asked, which come in pg_cron's order.
        let current = as_owner(|| {
            one::<Vec<String>>(
                "SELECT ARRAY[username, database] FROM pageperfect.job WHERE jobid = $1 AND ($2 OR username = $3)",
                &[job_id.into(), superuser.into(), caller.clone().into()],
            )
        })
        .and_then(|pair| <[String; 2]>::try_from(pair).ok());
        if username.is_some() && !superuser {
            error!("must be superuser to alter username");
        }
        // Who the job will run as: the new role, or its owner (pg_cron checks the caller; the
        // owner is who connects).
        let runs_as = username.map(str::to_string).or_else(|| current.as_ref().map(|[owner, _]| owner.clone())).unwrap_or(caller);
        if username.is_some() || database.is_some() || !crate::config::ENABLE_SUPERUSER_JOBS.get() {
            check_role(&runs_as);
        }
        if let Some(database) = database {
            check_database(&runs_as, database);
        } else if let (Some(_), Some([_, current_database])) = (username, &current) {
            check_database(&runs_as, current_database);
        }
        if let Some(schedule) = schedule {
            parse_schedule(schedule);
        }
        if schedule.is_none() && command.is_none() && database.is_none() && username.is_none() && active.is_none() {
            crate::raise_with(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "no updates specified",
                None,
                Some("You must specify at least one job attribute to change when calling alter_job"),
            );
        }
        if current.is_none() {
            error!("Job {job_id} does not exist or you don't own it");
        }
        as_owner(|| {
            Spi::run_with_args(
                "UPDATE pageperfect.job
                    SET schedule = coalesce($2, schedule), command = coalesce($3, command),
                        database = coalesce($4, database), username = coalesce($5, username),
                        active = coalesce($6, active)
                  WHERE jobid = $1",
                &[job_id.into(), schedule.into(), command.into(), database.into(), username.into(), active.into()],
            )
        })
        .unwrap_or_else(|e| error!("{e}"));
        wake_at_commit(Wake::Scheduler);
    }

    /// Beyond pg_cron: the caller's job `job_name` gets a timeout (its runs are cancelled and
    /// recorded failed past it), up to `max_attempts` attempts with `retry_backoff · 2^(n−1)`
    /// between them, a time zone for its schedule (`''` goes back to `pageperfect.timezone`),
    /// what happens to a tick while its last run goes on (`overlap`: skip, queue_one,
    /// cancel_previous) and to ticks missed while the server was down (`missed_runs`: skip,
    /// once, all; `catch_up => true` is `once`). NULL leaves a setting as it is. Returns the
    /// job's policy.
    #[pg_extern]
    #[allow(clippy::too_many_arguments)]
    fn alter_job_policy(
        job_name: &str,
        timeout: default!(Option<Interval>, "NULL"),
        max_attempts: default!(Option<i32>, "NULL"),
        retry_backoff: default!(Option<Interval>, "NULL"),
        catch_up: default!(Option<bool>, "NULL"),
        timezone: default!(Option<&str>, "NULL"),
        overlap: default!(Option<&str>, "NULL"),
        missed_runs: default!(Option<&str>, "NULL"),
    ) -> TableIterator<
        'static,
        (
            name!(jobid, i64),
            name!(timeout, Option<Interval>),
            name!(max_attempts, i32),
            name!(retry_backoff, Interval),
            name!(catch_up, bool),
            name!(timezone, Option<String>),
            name!(overlap, String),
            name!(missed_runs, String),
        ),
    > {
        crate::refuse_if_read_only("pageperfect.alter_job_policy()");
        let problem = one::<String>(
            "SELECT CASE WHEN $1 <= interval '0' THEN 'timeout must be a positive interval'
                         WHEN $2 < 1 THEN 'max_attempts must be at least 1'
                         WHEN $3 < interval '0' THEN 'retry_backoff must not be negative'
                         WHEN $4 NOT IN ('skip', 'queue_one', 'cancel_previous')
                              THEN 'overlap must be skip, queue_one or cancel_previous (got ' || $4 || ')'
                         WHEN $5 NOT IN ('skip', 'once', 'all')
                              THEN 'missed_runs must be skip, once or all (got ' || $5 || ')'
                         WHEN $5 IS NOT NULL AND $6 IS NOT NULL AND ($5 <> 'skip') <> $6
                              THEN 'catch_up and missed_runs disagree (catch_up => true is missed_runs => once)' END",
            &[timeout.into(), max_attempts.into(), retry_backoff.into(), overlap.into(), missed_runs.into(), catch_up.into()],
        );
        if let Some(problem) = problem {
            invalid_parameter(problem);
        }
        let missed = missed_runs.or(catch_up.map(|on| if on { "once" } else { "skip" }));
        let caller = current_user();
        let row = as_owner(|| {
            Spi::connect_mut(|client| {
                let table = client.update(
                    "UPDATE pageperfect.job
                        SET timeout = coalesce($3, timeout), max_attempts = coalesce($4, max_attempts),
                            retry_backoff = coalesce($5, retry_backoff), missed = coalesce($6, missed),
                            timezone = CASE WHEN $7 IS NULL THEN timezone ELSE nullif($7, '') END,
                            overlap = coalesce($8, overlap)
                      WHERE jobname = $1 AND username = $2
                  RETURNING jobid, timeout, max_attempts, retry_backoff, catch_up, timezone, overlap, missed",
                    Some(1),
                    &[
                        job_name.into(),
                        caller.into(),
                        timeout.into(),
                        max_attempts.into(),
                        retry_backoff.into(),
                        missed.into(),
                        timezone.into(),
                        overlap.into(),
                    ],
                )?;
                if table.is_empty() {
                    return Ok(None);
                }
                let row = table.first();
                Ok::<_, pgrx::spi::Error>(Some((
                    row.get::<i64>(1)?.unwrap_or_default(),
                    row.get::<Interval>(2)?,
                    row.get::<i32>(3)?.unwrap_or(1),
                    row.get::<Interval>(4)?.expect("retry_backoff is NOT NULL"),
                    row.get::<bool>(5)?.unwrap_or(false),
                    row.get::<String>(6)?,
                    row.get::<String>(7)?.unwrap_or_default(),
                    row.get::<String>(8)?.unwrap_or_default(),
                )))
            })
        })
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_else(|| no_such_job(format!("'{job_name}'")));
        wake_at_commit(Wake::Scheduler);
        TableIterator::once(row)
    }

    /// Cancels run `runid` of one of the caller's jobs (a superuser's: any): a queued run is
    /// recorded `cancelled` at once; a running one is interrupted, as `pg_cancel_backend` would,
    /// and recorded `cancelled` when it stops. False when the run had ended already.
    #[pg_extern(strict)]
    fn cancel_run(runid: i64) -> bool {
        crate::refuse_if_read_only("pageperfect.cancel_run()");
        // Who asks is known only before as_owner raises the rights.
        let (caller, superuser) = (current_user(), is_superuser());
        let status = as_owner(|| run_store::status_for(runid, &caller, superuser))
            .unwrap_or_else(|e| error!("{e}"))
            .unwrap_or_else(|| {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_NO_DATA_FOUND, format!("run {runid} does not exist"));
            });
        // A run a runner holds (even one whose row still says `starting`): the scheduler
        // interrupts it and records it.
        if let Some(shared) = slots::shared() {
            let held = shared.slots().iter().find(|slot| {
                matches!(slot.state(), slots::SlotState::Assigned | slots::SlotState::Running)
                    && slot.runid.load(std::sync::atomic::Ordering::Acquire) == runid
            });
            if let Some(slot) = held {
                slot.cancel_requested.store(true, std::sync::atomic::Ordering::Release);
                wakeup::wake_scheduler();
                return true;
            }
        }
        if status != RunStatus::Starting {
            return false;
        }
        let cancelled = as_owner(|| run_store::cancel_queued(runid)).unwrap_or_else(|e| error!("{e}"));
        wake_at_commit(Wake::Scheduler);
        cancelled
    }

    /// Starts a run of the caller's job `job_name` now, whatever its schedule; returns the
    /// runid to look for in `job_run_details`.
    #[pg_extern]
    fn run_job_now(job_name: &str) -> i64 {
        crate::refuse_if_read_only("pageperfect.run_job_now()");
        if !wakeup::latches().is_some_and(|l| l.has_scheduler()) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "the pageperfect scheduler is not running",
                "Add pageperfect to shared_preload_libraries and restart the server."
            );
        }
        let caller = current_user();
        let runid = as_owner(|| run_store::queue_manual(job_name, &caller)).unwrap_or_else(|e| error!("{e}"));
        wake_at_commit(Wake::Scheduler);
        runid.unwrap_or_else(|| no_such_job(format!("'{job_name}'")))
    }

    /// Turns the caller's job `job_name` on or off; `success` false when there is no such job.
    #[pg_extern]
    fn toggle_cron_job(
        job_name: &str,
        enable: bool,
    ) -> TableIterator<'static, (name!(success, bool), name!(message, String))> {
        crate::refuse_if_read_only("pageperfect.toggle_cron_job()");
        let changed = on_callers_job::<i64>(
            job_name,
            "UPDATE pageperfect.job SET active = $3 WHERE jobname = $1 AND username = $2 RETURNING jobid",
            vec![enable.into()],
        );
        let verb = if enable { "enabled" } else { "disabled" };
        TableIterator::once(match changed {
            Some(jobid) => (true, format!("job '{job_name}' (jobid {jobid}) {verb}")),
            None => (false, format!("job '{job_name}' not found")),
        })
    }
}

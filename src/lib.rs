//! pageperfect: an SEO content pipeline that runs inside PostgreSQL.
//!
//! One module per concern; each owns its hand-written SQL under `sql/` and its Rust code:
//! `scheduler` (pg_cron-compatible cron), `queue` (pgmq-shaped queues and the job engine),
//! `pipeline` (the PagePerfect stages), `http` (outgoing HTTP), `gsc` (Search Console and the
//! CTR curve), `monitor` (health, metrics, alerts). `config` defines the settings and `worker`
//! the background-worker runtime that the scheduler and pipeline workers share.

use pgrx::prelude::*;

pub mod backoff;
pub mod config;
pub mod gsc;
pub mod http;
pub mod monitor;
pub mod pipeline;
pub mod queue;
pub mod scheduler;
pub mod secrets;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// `text` cut to at most `max_chars` characters, with an ellipsis when cut: prompts, job
/// results and error messages quote long texts this way.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", text[..cut].trim_end()),
        None => text.to_string(),
    }
}

/// Raises SQLSTATE 22023 (invalid_parameter_value): the error for bad user input.
pub(crate) fn invalid_parameter(message: impl Into<String>) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
}

/// Raises an ERROR with this SQLSTATE.
pub(crate) fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    ereport!(ERROR, code, message.into());
}

/// Runs `body` as the bootstrap superuser (RLS and table privileges then allow the write the
/// caller's checks permitted). An error rolls the identity back with the transaction.
pub(crate) fn as_owner<R>(body: impl FnOnce() -> R) -> R {
    let mut user = pg_sys::Oid::INVALID;
    let mut context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let result = body();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}


/// The role the calling SQL runs as (`CURRENT_USER`).
pub(crate) fn current_user() -> String {
    Spi::get_one::<String>("SELECT CURRENT_USER::text").ok().flatten().unwrap_or_default()
}

#[allow(non_snake_case)]
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Static workers can only be registered while the postmaster loads shared_preload_libraries;
    // a backend that loads the library later (CREATE EXTENSION, a function call) skips them.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    config::define_gucs(preloading);
    if preloading {
        scheduler::slots::request_shared_memory();
        worker::register_workers();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod install_tests;

/// Required by `cargo pgrx test`: the throw-away test cluster preloads the extension and points
/// its workers at the test database.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pageperfect'", "pageperfect.database_name = 'pgrx_tests'"]
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_cut_on_characters_and_mark_the_cut() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("crème brûlée", 5), "crème…");
        assert_eq!(excerpt("two words", 4), "two…");
    }
}

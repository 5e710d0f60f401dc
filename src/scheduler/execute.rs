//! Runs a job's command in the runner's backend as psql's simple query protocol would, so that
//! what works under pg_cron works here: several statements in one transaction, `VACUUM` alone,
//! `CALL` of a procedure that commits. The result is pg_cron's `return_message`: the last
//! statement's command tag (`INSERT 0 3`) or the error as `ERROR: …` with its detail and hint.

use pgrx::pg_sys;
use crate::worker::error_report;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// Executes `sql` in a transaction of its own. `Ok(command tag)` or `Err(error text)`.
pub fn run_command(sql: &str) -> Result<String, String> {
    let Ok(sql) = CString::new(sql) else {
        return Err("ERROR: the command contains a zero byte".to_string());
    };
    // Parse trees and plans must outlive transactions that the command itself commits (VACUUM,
    // CALL with COMMIT), so they live in a context of their own until the command is done.
    let parse_context = unsafe {
        pg_sys::AllocSetContextCreateExtended(
            pg_sys::TopMemoryContext,
            c"pageperfect job parse/plan".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    };
    let sql_ptr = sql.as_ptr();
    let result = PgTryBuilder::new(|| unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        let tag = execute_statements(sql_ptr, parse_context);
        pg_sys::CommitTransactionCommand();
        Ok(tag)
    })
    .catch_others(|caught| Err(error_text(&caught)))
    .catch_rust_panic(|caught| Err(error_text(&caught)))
    .execute();
    unsafe {
        if result.is_err() {
            pg_sys::AbortCurrentTransaction();
        }
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        pg_sys::MemoryContextDelete(parse_context);
    }
    result
}

/// pg_cron's format: severity, message, then DETAIL and HINT lines when present.
fn error_text(caught: &CaughtError) -> String {
    let report = error_report(caught);
    let mut text = format!("ERROR: {}", report.message());
    if let Some(detail) = report.detail() {
        text.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = report.hint() {
        text.push_str(&format!("\nHINT: {hint}"));
    }
    text
}

/// Parses, plans and runs each statement of `sql` in turn (a statement may depend on the one
/// before it), returning the last command tag. Mirrors `exec_simple_query` in postgres.c.
unsafe fn execute_statements(sql: *const std::ffi::c_char, parse_context: pg_sys::MemoryContext) -> String {
    let outer = pg_sys::MemoryContextSwitchTo(parse_context);
    let statements = pg_sys::pg_parse_query(sql);
    pg_sys::MemoryContextSwitchTo(outer);
    let count = if statements.is_null() { 0 } else { (*statements).length as usize };
    // Only a lone statement runs at top level, where VACUUM and transaction-controlling
    // procedures are allowed; several run as one implicit transaction, as in psql.
    let top_level = count == 1;
    let mut tag = String::new();
    for i in 0..count {
        let statement = (*(*statements).elements.add(i)).ptr_value as *mut pg_sys::RawStmt;
        if (*(*statement).stmt).type_ == pg_sys::NodeTag::T_TransactionStmt {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "transaction control statements are not allowed in pageperfect jobs"
            );
        }
        let command_tag = pg_sys::CreateCommandTag((*statement).stmt);
        pg_sys::set_ps_display(pg_sys::GetCommandTagName(command_tag));

        let snapshot_set = pg_sys::analyze_requires_snapshot(statement);
        if snapshot_set {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let outer = pg_sys::MemoryContextSwitchTo(parse_context);
        let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(statement, sql, std::ptr::null(), 0, std::ptr::null_mut());
        let plans = pg_sys::pg_plan_queries(queries, sql, pg_sys::CURSOR_OPT_PARALLEL_OK as i32, std::ptr::null_mut());
        if snapshot_set {
            pg_sys::PopActiveSnapshot();
        }
        pgrx::check_for_interrupts!();

        let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
        (*portal).visible = false;
        pg_sys::PortalDefineQuery(portal, std::ptr::null(), sql, command_tag, plans, std::ptr::null_mut());
        pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
        let receiver = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
        pg_sys::MemoryContextSwitchTo(outer);

        let mut completion = pg_sys::QueryCompletion { commandTag: command_tag, nprocessed: 0 };
        pg_sys::PortalRun(portal, std::ffi::c_long::MAX, top_level, true, receiver, receiver, &mut completion);
        if let Some(destroy) = (*receiver).rDestroy {
            destroy(receiver);
        }
        pg_sys::PortalDrop(portal, false);
        tag = completion_tag(&completion);
        if pg_sys::IsTransactionState() {
            pg_sys::CommandCounterIncrement();
        }
    }
    tag
}

/// The command tag psql would print: `SELECT 3`, `INSERT 0 1`, `VACUUM`.
unsafe fn completion_tag(completion: &pg_sys::QueryCompletion) -> String {
    let name = CStr::from_ptr(pg_sys::GetCommandTagName(completion.commandTag)).to_string_lossy();
    if !pg_sys::command_tag_display_rowcount(completion.commandTag) {
        name.into_owned()
    } else if completion.commandTag == pg_sys::CommandTag::CMDTAG_INSERT {
        format!("{name} 0 {}", completion.nprocessed)
    } else {
        format!("{name} {}", completion.nprocessed)
    }
}

//! pgmq's queue functions (`create_queue`, `send`, `read`, `delete`, …) as roles call them.
//!
//! Roles have no write privilege on the queue tables. Each function here takes its caller (the
//! role it runs as, known only before any rights are raised) and runs the matching
//! `*_for(caller, …)` function of `sql/queue_api.sql` as the owner, with a pinned search_path;
//! that function decides whether the caller may use the queue. Read-only functions (`metrics`,
//! `list_queues`) stay in SQL and run as the caller under row-level security.
//!
//! `read_with_poll` waits on its latch between reads, and a send that commits while sessions
//! wait sets their latches (`wakeup::QueueWaiter`): a waiting reader gets a new message at once,
//! not at its next poll.

use crate::wakeup::{self, wake_at_commit, QueueWaiter, Wake};
use crate::{as_owner, current_user, invalid_parameter};
use std::time::{Duration, Instant};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::PgOid;
use super::raw::{RawBigintArray, RawJsonb, RawJsonbArray};
use std::cell::RefCell;
use std::collections::HashMap;

/// One message as pgmq 1.13 returns it: msg_id, read_ct, enqueued_at, last_read_at, vt, message,
/// headers. (The pg_extern signatures below spell the columns out: pgrx reads them from the
/// signature itself.)
type MessageRow = (i64, i32, TimestampWithTimeZone, Option<TimestampWithTimeZone>, TimestampWithTimeZone, RawJsonb, Option<RawJsonb>);

thread_local! {
    /// Each statement's plan, prepared once per backend: parsing and planning the call anew
    /// each time cost more than the call itself on the batch-1 path.
    static PLANS: RefCell<HashMap<String, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Runs `body` as the owner, in one SPI connection, with the backend's prepared plans (see
/// `execute`). `function` names the pgmq-named function for the read-only refusal: every gate
/// writes.
fn as_owner_spi<T>(
    function: &str,
    body: impl FnOnce(&mut pgrx::spi::SpiClient<'_>, &mut HashMap<String, OwnedPreparedStatement>) -> Result<T, pgrx::spi::Error>,
) -> T {
    crate::refuse_if_read_only(format_args!("pageperfect.{function}()"));
    as_owner(|| Spi::connect_mut(|client| PLANS.with_borrow_mut(|plans| body(client, plans)))).unwrap_or_else(|e| error!("{e}"))
}

/// Runs `sql` with `args`, preparing it (typed by `args`) the first time `key` is asked for.
fn execute<'conn>(
    client: &mut pgrx::spi::SpiClient<'conn>,
    plans: &mut HashMap<String, OwnedPreparedStatement>,
    key: &str,
    sql: impl FnOnce() -> String,
    args: &[DatumWithOid<'_>],
) -> Result<pgrx::spi::SpiTupleTable<'conn>, pgrx::spi::Error> {
    if !plans.contains_key(key) {
        let types: Vec<PgOid> = args.iter().map(|arg| PgOid::from(arg.oid())).collect();
        let plan = client.prepare_mut(sql().as_str(), &types)?.keep();
        plans.insert(key.to_owned(), plan);
    }
    client.update(&plans[key], None, args)
}

/// Runs `sql` (a call of a `*_for` function whose `$1` is the caller) as the owner with the
/// caller and then `args` as its parameters, and maps each row it returns with `row`.
fn rows_for_caller<T>(
    sql: &'static str,
    args: Vec<DatumWithOid<'_>>,
    row: impl Fn(pgrx::spi::SpiHeapTupleData) -> Result<T, pgrx::spi::Error>,
) -> Vec<T> {
    // "SELECT pageperfect.send_for($1, …)" is pageperfect.send().
    let function = sql.split_once("pageperfect.").and_then(|(_, rest)| rest.split_once("_for(")).map_or("", |(name, _)| name);
    let mut all_args: Vec<DatumWithOid> = vec![current_user().into()];
    all_args.extend(args);
    as_owner_spi(function, |client, plans| {
        execute(client, plans, sql, || sql.to_owned(), &all_args)?.map(&row).collect::<Result<Vec<T>, _>>()
    })
}

/// The first column of the single row `sql` returns (see `rows_for_caller`).
fn one_for_caller<T: FromDatum + IntoDatum>(sql: &'static str, args: Vec<DatumWithOid<'_>>) -> Option<T> {
    rows_for_caller(sql, args, |row| row.get::<T>(1)).into_iter().next().flatten()
}

// The hot paths (send, send_batch, read, delete) run their statements from here instead of
// through the `*_for` PL/pgSQL functions: one statement each where it can be (two for a send,
// which holds the queue against drop_queue first), planned once per backend, with the
// permission probe inside the statement. When a statement comes back empty, or an argument is
// out of the ordinary (NULLs, a negative delay, a `conditional` filter, a dead-letter queue),
// the `*_for` function runs instead, so every error and edge case is exactly its.

/// Inside a statement whose `$1` is the queue name and `$2` the caller: the caller may use it.
const ALLOWED: &str = "EXISTS (SELECT FROM pageperfect.queues q WHERE q.queue_name OPERATOR(pg_catalog.=) $1
               AND pg_catalog.pg_has_role($2::pg_catalog.name, q.owner, 'USAGE'))";

/// Holds the queue against drop_queue until commit (as check_send); its own statement, so that
/// the probe after it sees a drop that committed while it waited.
const SEND_LOCK: &str = "SELECT pg_catalog.pg_advisory_xact_lock_shared(1885957734, pg_catalog.hashtext($1))";

/// The rest of a send (push_messages): `$3` the messages' rows, `$4` delay, `$5` priority; the
/// counter only when something was sent (and so the caller may use the queue).
fn send_sql(rows: &str) -> String {
    format!(
        "WITH sent AS (
            INSERT INTO pageperfect.queue_messages (queue_name, vt, priority, message, headers)
            SELECT $1, pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $4::pg_catalog.float8),
                   $5, u.m, u.h
              FROM {rows}
             WHERE {ALLOWED}
             ORDER BY u.n
            RETURNING msg_id
        ), counted AS (
            INSERT INTO pageperfect.queue_sent_counts AS c (queue_name, stripe, sent)
            SELECT $1, pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.%) 16, pg_catalog.count(*) FROM sent
            HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0
            ON CONFLICT (queue_name, stripe) DO UPDATE SET sent = c.sent OPERATOR(pg_catalog.+) excluded.sent
        )
        SELECT msg_id FROM sent"
    )
}

/// Sends `args` ($1 queue, $2 caller, $3 message(s), $4 delay, $5 priority, $6 headers) with the
/// statement `key`; the ids, or None when nothing was sent.
fn send_fast(function: &str, key: &'static str, rows: &'static str, args: &[DatumWithOid<'_>]) -> Option<Vec<i64>> {
    as_owner_spi(function, |client, plans| {
        execute(client, plans, "send_lock", || SEND_LOCK.to_owned(), &args[..1])?;
        let ids = execute(client, plans, key, || send_sql(rows), args)?
            .map(|row| row.get::<i64>(1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids.into_iter().collect::<Option<Vec<i64>>>().filter(|ids| !ids.is_empty()))
    })
}

/// Read plans are kept for this many distinct `qty`s (their LIMIT is written in: a LIMIT
/// parameter would be planned anew on every call); other sizes take a LIMIT parameter.
const READ_PLANS: usize = 32;

thread_local! {
    static READ_QTYS: RefCell<std::collections::HashSet<i32>> = RefCell::new(std::collections::HashSet::new());
}

/// read_for without a filter, on a queue that may be read and has no dead-letter option: `$1`
/// queue, `$2` caller, `$3` vt, `$4` qty when `limit` is "$4". Small reads come back in the
/// order they were taken (priority, then age), larger ones by id, as read_for's.
fn read_sql(limit: &str, small: bool) -> String {
    let order = if small { "priority DESC, msg_id" } else { "msg_id" };
    format!(
        "WITH taken AS (
            SELECT m.msg_id FROM pageperfect.queue_messages m
             WHERE m.queue_name OPERATOR(pg_catalog.=) $1 AND m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
               AND EXISTS (SELECT FROM pageperfect.queues q
                            WHERE q.queue_name OPERATOR(pg_catalog.=) $1 AND NOT q.paused AND q.max_reads IS NULL
                              AND pg_catalog.pg_has_role($2::pg_catalog.name, q.owner, 'USAGE'))
             ORDER BY m.priority DESC, m.msg_id
             LIMIT {limit}
               FOR UPDATE SKIP LOCKED
        ), updated AS (
            UPDATE pageperfect.queue_messages m
               SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3::pg_catalog.float8),
                   read_ct = m.read_ct OPERATOR(pg_catalog.+) 1, last_read_at = pg_catalog.clock_timestamp()
              FROM taken
             WHERE m.msg_id OPERATOR(pg_catalog.=) taken.msg_id
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers, m.priority
        )
        SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM updated ORDER BY {order}"
    )
}

/// read(): the fast path when it applies and returns messages, else read_for. `collect` takes
/// the statement's result (message_record's columns) and returns what it kept of each row.
fn read_with<T>(
    queue_name: Option<&str>,
    vt: Option<i32>,
    qty: Option<i32>,
    conditional: Option<RawJsonb>,
    collect: impl Fn(pgrx::spi::SpiTupleTable<'_>) -> Result<Vec<T>, pgrx::spi::Error>,
) -> Vec<T> {
    let plain = queue_name.is_some()
        && vt.is_some_and(|vt| vt >= 0)
        && conditional.is_none_or(|c| c.is_empty_object());
    if let (true, Some(qty)) = (plain, qty.filter(|q| *q >= 1)) {
        let small = qty <= 10;
        let written = READ_QTYS.with_borrow_mut(|qtys| {
            qtys.contains(&qty) || (qtys.len() < READ_PLANS && qtys.insert(qty))
        });
        let (key, limit) = if written { (format!("read_{qty}"), qty.to_string()) } else { (format!("read_param_{small}"), "$4".to_owned()) };
        let mut args: Vec<DatumWithOid> = vec![queue_name.into(), current_user().into(), vt.into()];
        if !written {
            args.push(qty.into());
        }
        let messages = as_owner_spi("read", |client, plans| collect(execute(client, plans, &key, || read_sql(&limit, small), &args)?));
        if !messages.is_empty() {
            return messages;
        }
    }
    const READ_FOR: &str = "SELECT * FROM pageperfect.read_for($1, $2, $3, $4, $5)";
    let args: Vec<DatumWithOid> = vec![current_user().into(), queue_name.into(), vt.into(), qty.into(), conditional.into()];
    as_owner_spi("read", |client, plans| collect(execute(client, plans, READ_FOR, || READ_FOR.to_owned(), &args)?))
}

/// read() for read_with_poll: the messages as Rust values.
fn read_messages(queue_name: Option<&str>, vt: Option<i32>, qty: Option<i32>, conditional: Option<RawJsonb>) -> Vec<MessageRow> {
    read_with(queue_name, vt, qty, conditional, |table| table.map(message_row).collect())
}

/// `pageperfect.read()` itself returns its rows in materialize mode: each tuple of the
/// statement's result (the function's own row type) goes into the result tuplestore as it is.
/// pgrx's value-per-call protocol turned each message into Rust values, formed a new tuple of
/// them and returned it in a call of its own, about 1 µs a message.
#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_pageperfect_queue_read() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pageperfect_queue_read(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let queue_name = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0);
        let vt = pgrx::fcinfo::pg_getarg::<i32>(fcinfo, 1);
        let qty = pgrx::fcinfo::pg_getarg::<i32>(fcinfo, 2);
        let conditional = pgrx::fcinfo::pg_getarg::<RawJsonb>(fcinfo, 3);
        pg_sys::InitMaterializedSRF(fcinfo, 0);
        let store = (*((*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo)).setResult;
        read_with(queue_name, vt, qty, conditional, |table| {
            // The table is SPI_tuptable, just filled.
            let n = table.len();
            let tuples = (*pg_sys::SPI_tuptable).vals;
            for i in 0..n {
                pg_sys::tuplestore_puttuple(store, *tuples.add(i));
            }
            Ok(vec![(); n])
        });
        pg_sys::Datum::from(0)
    }
}

pgrx::extension_sql!(
    r#"
CREATE FUNCTION pageperfect."read"(queue_name text, vt int, qty int, conditional jsonb DEFAULT '{}')
RETURNS TABLE (msg_id bigint, read_ct int, enqueued_at timestamptz, last_read_at timestamptz, vt timestamptz,
               message jsonb, headers jsonb)
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'pageperfect_queue_read';
"#,
    name = "queue_read",
    requires = ["queue_api"]
);

/// delete(): one statement that checks the queue as it deletes; when it deleted nothing,
/// queue_must_allow says whether that is because the queue is not the caller's.
fn delete_fast(key: &'static str, sql: &'static str, args: &[DatumWithOid<'_>]) -> Vec<i64> {
    as_owner_spi("delete", |client, plans| {
        let ids = execute(client, plans, key, || sql.replace("{ALLOWED}", ALLOWED), args)?
            .map(|row| row.get::<i64>(1))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            execute(client, plans, "must_allow", || "SELECT pageperfect.queue_must_allow($1, $2::pg_catalog.name)".to_owned(), &args[..2])?;
        }
        Ok(ids.into_iter().flatten().collect())
    })
}

const DELETE_ONE: &str = "DELETE FROM pageperfect.queue_messages m
 WHERE m.msg_id OPERATOR(pg_catalog.=) $3 AND m.queue_name OPERATOR(pg_catalog.=) $1 AND {ALLOWED}
RETURNING m.msg_id";

const DELETE_MANY: &str = "DELETE FROM pageperfect.queue_messages m
 WHERE m.msg_id OPERATOR(pg_catalog.=) ANY ($3) AND m.queue_name OPERATOR(pg_catalog.=) $1 AND {ALLOWED}
RETURNING m.msg_id";

fn message_row(row: pgrx::spi::SpiHeapTupleData) -> Result<MessageRow, pgrx::spi::Error> {
    let missing = || pgrx::spi::Error::InvalidPosition;
    Ok((
        row.get::<i64>(1)?.ok_or_else(missing)?,
        row.get::<i32>(2)?.ok_or_else(missing)?,
        row.get::<TimestampWithTimeZone>(3)?.ok_or_else(missing)?,
        row.get::<TimestampWithTimeZone>(4)?,
        row.get::<TimestampWithTimeZone>(5)?.ok_or_else(missing)?,
        row.get::<RawJsonb>(6)?.ok_or_else(missing)?,
        row.get::<RawJsonb>(7)?,
    ))
}

fn messages_for_caller(sql: &'static str, args: Vec<DatumWithOid<'_>>) -> TableIterator<'static, MessageRow> {
    TableIterator::new(rows_for_caller(sql, args, message_row))
}

fn ids_for_caller(sql: &'static str, args: Vec<DatumWithOid<'_>>) -> SetOfIterator<'static, i64> {
    SetOfIterator::new(rows_for_caller(sql, args, |row| row.get::<i64>(1)).into_iter().flatten())
}

/// After a send: sessions waiting in `read_with_poll` read again when this transaction commits.
fn wake_readers() {
    if wakeup::latches().is_some_and(|l| l.queue_readers_wait()) {
        wake_at_commit(Wake::QueueReaders);
    }
}

#[pg_schema]
mod pageperfect {
    use super::*;

    /// Creates a queue owned by the caller; idempotent, as `pgmq.create`.
    #[pg_extern(volatile)]
    fn create_queue(queue_name: Option<&str>) {
        rows_for_caller("SELECT pageperfect.create_queue_for($1, $2)", vec![queue_name.into()], |_| Ok(()));
    }

    #[pg_extern(volatile)]
    fn send(
        queue_name: Option<&str>,
        message: Option<RawJsonb>,
        delay_seconds: default!(Option<i32>, 0),
        priority: default!(Option<i32>, 0),
        headers: default!(Option<RawJsonb>, "NULL"),
    ) -> Option<i64> {
        let delay_ok = delay_seconds.is_some_and(|d| d >= 0);
        let fast = match (queue_name, message) {
            (Some(_), Some(_)) if delay_ok => send_fast(
                "send",
                "send_one",
                "(SELECT $3::pg_catalog.jsonb AS m, $6::pg_catalog.jsonb AS h, 1 AS n) AS u",
                &[queue_name.into(), current_user().into(), message.into(), delay_seconds.into(), priority.unwrap_or(0).into(), headers.into()],
            ),
            _ => None,
        };
        let sent = match fast {
            Some(ids) => ids.first().copied(),
            None => one_for_caller(
                "SELECT pageperfect.send_for($1, $2, $3, $4, $5, $6)",
                vec![queue_name.into(), message.into(), delay_seconds.into(), priority.into(), headers.into()],
            ),
        };
        wake_readers();
        sent
    }

    #[pg_extern(volatile)]
    fn send_batch(
        queue_name: Option<&str>,
        messages: Option<RawJsonbArray>,
        delay_seconds: default!(Option<i32>, 0),
        priority: default!(Option<i32>, 0),
        headers: default!(Option<RawJsonbArray>, "NULL"),
    ) -> SetOfIterator<'static, i64> {
        // The fast path for what check_send accepts: a flat array of messages without NULLs,
        // headers (when given) one per message, a delay of 0 or more.
        let fast = match (queue_name, messages) {
            (Some(_), Some(batch)) if delay_seconds.is_some_and(|d| d >= 0) => {
                let shape = batch.shape();
                let headers_fit = headers.is_none_or(|h| {
                    let h = h.shape();
                    h.flat && h.len == shape.len
                });
                if shape.flat && !shape.has_nulls && shape.len > 0 && headers_fit {
                    send_fast(
                        "send_batch",
                        "send_batch",
                        "pg_catalog.unnest($3) WITH ORDINALITY AS b (m, n), LATERAL (SELECT b.m, $6[b.n] AS h, b.n) AS u",
                        &[queue_name.into(), current_user().into(), messages.into(), delay_seconds.into(), priority.unwrap_or(0).into(), headers.into()],
                    )
                } else {
                    None
                }
            }
            _ => None,
        };
        let sent = match fast {
            Some(ids) => SetOfIterator::new(ids),
            None => ids_for_caller(
                "SELECT pageperfect.send_batch_for($1, $2, $3, $4, $5, $6)",
                vec![queue_name.into(), messages.into(), delay_seconds.into(), priority.into(), headers.into()],
            ),
        };
        wake_readers();
        sent
    }

    /// `read`, waiting up to `max_poll_seconds` for a message when none is visible, as pgmq's:
    /// woken at once when a send commits, and reading again at least every `poll_interval_ms`
    /// (for messages whose delay ends, or when many sessions wait).
    #[pg_extern(volatile)]
    fn read_with_poll(
        queue_name: Option<&str>,
        vt: Option<i32>,
        qty: Option<i32>,
        max_poll_seconds: default!(Option<i32>, 5),
        poll_interval_ms: default!(Option<i32>, 100),
        conditional: default!(Option<RawJsonb>, "'{}'"),
    ) -> TableIterator<
        'static,
        (
            name!(msg_id, i64),
            name!(read_ct, i32),
            name!(enqueued_at, TimestampWithTimeZone),
            name!(last_read_at, Option<TimestampWithTimeZone>),
            name!(vt, TimestampWithTimeZone),
            name!(message, RawJsonb),
            name!(headers, Option<RawJsonb>),
        ),
    > {
        let max_poll_seconds = max_poll_seconds.filter(|s| *s >= 0).unwrap_or_else(|| {
            invalid_parameter(format!("max_poll_seconds must be 0 or more seconds, not {}", max_poll_seconds.map_or("NULL".into(), |s| s.to_string())))
        });
        let poll_interval = poll_interval_ms
            .filter(|ms| *ms >= 1)
            .map(|ms| Duration::from_millis(ms as u64))
            .unwrap_or_else(|| invalid_parameter("poll_interval_ms must be at least 1"));
        let deadline = Instant::now() + Duration::from_secs(max_poll_seconds as u64);
        let _waiting = QueueWaiter::register();
        loop {
            // Reset before reading: a send that commits after this read sets the latch again.
            unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
            let messages = read_messages(queue_name, vt, qty, conditional);
            let now = Instant::now();
            if !messages.is_empty() || now >= deadline {
                return TableIterator::new(messages);
            }
            let wait = poll_interval.min(deadline - now);
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                    wait.as_millis().max(1) as std::ffi::c_long,
                    pg_sys::PG_WAIT_EXTENSION,
                );
            }
            pgrx::check_for_interrupts!();
        }
    }

    /// Reads and deletes at once: the message is gone whether or not the caller's work succeeds.
    #[pg_extern(volatile)]
    fn pop(queue_name: Option<&str>, qty: default!(Option<i32>, 1)) -> TableIterator<
        'static,
        (
            name!(msg_id, i64),
            name!(read_ct, i32),
            name!(enqueued_at, TimestampWithTimeZone),
            name!(last_read_at, Option<TimestampWithTimeZone>),
            name!(vt, TimestampWithTimeZone),
            name!(message, RawJsonb),
            name!(headers, Option<RawJsonb>),
        ),
    > {
        messages_for_caller("SELECT * FROM pageperfect.pop_for($1, $2, $3)", vec![queue_name.into(), qty.into()])
    }

    #[pg_extern(volatile, name = "delete")]
    fn delete_one(queue_name: Option<&str>, msg_id: Option<i64>) -> Option<bool> {
        Some(!delete_fast("delete_one", DELETE_ONE, &[queue_name.into(), current_user().into(), msg_id.into()]).is_empty())
    }

    #[pg_extern(volatile, name = "delete")]
    fn delete_many(queue_name: Option<&str>, msg_ids: Option<RawBigintArray>) -> SetOfIterator<'static, i64> {
        SetOfIterator::new(delete_fast("delete_many", DELETE_MANY, &[queue_name.into(), current_user().into(), msg_ids.into()]))
    }

    /// Moves the message to `queue_archive`, as `pgmq.archive`.
    #[pg_extern(volatile, name = "archive")]
    fn archive_one(queue_name: Option<&str>, msg_id: Option<i64>) -> Option<bool> {
        one_for_caller("SELECT pageperfect.archive_for($1, $2, $3)", vec![queue_name.into(), msg_id.into()])
    }

    #[pg_extern(volatile, name = "archive")]
    fn archive_many(queue_name: Option<&str>, msg_ids: Option<RawBigintArray>) -> SetOfIterator<'static, i64> {
        ids_for_caller("SELECT pageperfect.archive_batch_for($1, $2, $3)", vec![queue_name.into(), msg_ids.into()])
    }

    /// Makes a message invisible for `vt` seconds from now (0: visible at once); returns it, or
    /// no row when it does not exist.
    #[pg_extern(volatile)]
    fn set_vt(queue_name: Option<&str>, msg_id: Option<i64>, vt: Option<i32>) -> TableIterator<
        'static,
        (
            name!(msg_id, i64),
            name!(read_ct, i32),
            name!(enqueued_at, TimestampWithTimeZone),
            name!(last_read_at, Option<TimestampWithTimeZone>),
            name!(vt, TimestampWithTimeZone),
            name!(message, RawJsonb),
            name!(headers, Option<RawJsonb>),
        ),
    > {
        messages_for_caller(
            "SELECT * FROM pageperfect.set_vt_for($1, $2, $3, $4)",
            vec![queue_name.into(), msg_id.into(), vt.into()],
        )
    }

    /// Deletes every message of the queue (not its archive); returns how many.
    #[pg_extern(volatile)]
    fn purge_queue(queue_name: Option<&str>) -> Option<i64> {
        one_for_caller("SELECT pageperfect.purge_queue_for($1, $2)", vec![queue_name.into()])
    }

    /// Pauses the queue: reads return nothing until `resume_queue`; sends are still accepted.
    /// False when it was paused already.
    #[pg_extern(volatile)]
    fn pause_queue(queue_name: Option<&str>) -> Option<bool> {
        one_for_caller("SELECT pageperfect.set_queue_paused_for($1, $2, true)", vec![queue_name.into()])
    }

    /// Dead letters after `max_reads` reads (pgmq has none: pgmq#274): a message of the queue
    /// read that many times that comes round again goes to `dead_letter_queue` (one of the
    /// caller's queues; its headers say where from) or, when NULL, to the archive, instead of
    /// being read again. `max_reads` NULL turns it off.
    #[pg_extern(volatile)]
    fn set_dead_letter(queue_name: Option<&str>, max_reads: Option<i32>, dead_letter_queue: default!(Option<&str>, "NULL")) {
        rows_for_caller(
            "SELECT pageperfect.set_dead_letter_for($1, $2, $3, $4)",
            vec![queue_name.into(), max_reads.into(), dead_letter_queue.into()],
            |_| Ok(()),
        );
    }

    /// Resumes a paused queue; false when it was not paused.
    #[pg_extern(volatile)]
    fn resume_queue(queue_name: Option<&str>) -> Option<bool> {
        one_for_caller("SELECT pageperfect.set_queue_paused_for($1, $2, false)", vec![queue_name.into()])
    }

    /// Drops the queue with its messages, archive and counters; false when the caller has no
    /// such queue.
    #[pg_extern(volatile)]
    fn drop_queue(queue_name: Option<&str>) -> Option<bool> {
        one_for_caller("SELECT pageperfect.drop_queue_for($1, $2)", vec![queue_name.into()])
    }
}

//! pgmq's queue functions (`create_queue`, `send`, `read`, `delete`, …) as roles call them.
//!
//! Roles have no write privilege on the queue tables. Each function here takes its caller (the
//! role it runs as, known only before any rights are raised) and runs the matching
//! `*_for(caller, …)` function of `sql/queue_api.sql` as the owner, with a pinned search_path;
//! that function decides whether the caller may use the queue. Read-only functions (`metrics`,
//! `list_queues`) stay in SQL and run as the caller under row-level security.
//!
//! `read_with_poll` waits on its latch between reads, and a send that commits while sessions
//! wait sets their latches (`slots::QueueWaiter`): a waiting reader gets a new message at once,
//! not at its next poll.

use crate::scheduler::slots::{self, wake_at_commit, QueueWaiter, Wake};
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
    /// Each call's plan, prepared once per backend: parsing and planning the call anew each
    /// time cost more than the call itself on the batch-1 path.
    static PLANS: RefCell<HashMap<&'static str, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Runs `sql` (a call of a `*_for` function whose `$1` is the caller) as the owner with the
/// caller and then `args` as its parameters, and maps each row it returns with `row`.
fn rows_for_caller<T>(
    sql: &'static str,
    args: Vec<DatumWithOid<'_>>,
    row: impl Fn(pgrx::spi::SpiHeapTupleData) -> Result<T, pgrx::spi::Error>,
) -> Vec<T> {
    // "SELECT pageperfect.send_for($1, …)" is pageperfect.send(): every gate writes.
    let function = sql.split_once("pageperfect.").and_then(|(_, rest)| rest.split_once("_for(")).map_or("", |(name, _)| name);
    crate::refuse_if_read_only(format_args!("pageperfect.{function}()"));
    let mut all_args: Vec<DatumWithOid> = vec![current_user().into()];
    all_args.extend(args);
    as_owner(|| {
        Spi::connect_mut(|client| {
            PLANS.with_borrow_mut(|plans| {
                if !plans.contains_key(sql) {
                    let types: Vec<PgOid> = all_args.iter().map(|arg| PgOid::from(arg.oid())).collect();
                    plans.insert(sql, client.prepare_mut(sql, &types)?.keep());
                }
                client.update(&plans[sql], None, &all_args)?.map(&row).collect::<Result<Vec<T>, _>>()
            })
        })
    })
    .unwrap_or_else(|e| error!("{e}"))
}

/// The first column of the single row `sql` returns (see `rows_for_caller`).
fn one_for_caller<T: FromDatum + IntoDatum>(sql: &'static str, args: Vec<DatumWithOid<'_>>) -> Option<T> {
    rows_for_caller(sql, args, |row| row.get::<T>(1)).into_iter().next().flatten()
}

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
    if slots::shared().is_some_and(|s| s.queue_readers_wait()) {
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
        let sent = one_for_caller(
            "SELECT pageperfect.send_for($1, $2, $3, $4, $5, $6)",
            vec![queue_name.into(), message.into(), delay_seconds.into(), priority.into(), headers.into()],
        );
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
        let sent = ids_for_caller(
            "SELECT pageperfect.send_batch_for($1, $2, $3, $4, $5, $6)",
            vec![queue_name.into(), messages.into(), delay_seconds.into(), priority.into(), headers.into()],
        );
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
            let messages = rows_for_caller(
                "SELECT * FROM pageperfect.read_for($1, $2, $3, $4, $5)",
                vec![queue_name.into(), vt.into(), qty.into(), conditional.into()],
                message_row,
            );
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

    /// Up to `qty` visible messages (containing `conditional`, when given), each invisible to
    /// other readers for `vt` seconds.
    #[pg_extern(volatile)]
    fn read(
        queue_name: Option<&str>,
        vt: Option<i32>,
        qty: Option<i32>,
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
        messages_for_caller(
            "SELECT * FROM pageperfect.read_for($1, $2, $3, $4, $5)",
            vec![queue_name.into(), vt.into(), qty.into(), conditional.into()],
        )
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
        one_for_caller("SELECT pageperfect.delete_for($1, $2, $3)", vec![queue_name.into(), msg_id.into()])
    }

    #[pg_extern(volatile, name = "delete")]
    fn delete_many(queue_name: Option<&str>, msg_ids: Option<RawBigintArray>) -> SetOfIterator<'static, i64> {
        ids_for_caller("SELECT pageperfect.delete_batch_for($1, $2, $3)", vec![queue_name.into(), msg_ids.into()])
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

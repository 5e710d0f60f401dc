//! Process-wide wake-ups: the latches of the scheduler, the pipeline workers and the sessions
//! waiting in `read_with_poll`, in shared memory of their own, and `wake_at_commit`, by which a
//! transaction wakes them when (and only when) it commits. The scheduler, the job engine, the
//! queue and durable HTTP all wake each other through this module and depend on nothing else
//! for it; it depends on none of them.

use pgrx::callbacks::{register_xact_callback, PgXactCallbackEvent};
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The most pipeline workers `pageperfect.pipeline_workers` allows.
pub const MAX_PIPELINE_WORKERS: usize = 64;
/// Sessions that can wait in `read_with_poll` on a latch at once; more poll at their interval.
pub const MAX_QUEUE_WAITERS: usize = 256;

#[repr(C)]
pub struct Latches {
    scheduler: AtomicPtr<pg_sys::Latch>,
    pipeline_workers: [AtomicPtr<pg_sys::Latch>; MAX_PIPELINE_WORKERS],
    /// Bumped at commit of every transaction that changed jobs or queued a run.
    pub generation: AtomicU64,
    /// Bumped at commit of every transaction that queued pipeline work or freed a stage slot.
    pub pipeline_generation: AtomicU64,
    /// Latches of sessions waiting in `read_with_poll` (null: free), and how many are taken.
    queue_waiters: [AtomicPtr<pg_sys::Latch>; MAX_QUEUE_WAITERS],
    queue_waiter_pids: [AtomicI32; MAX_QUEUE_WAITERS],
    queue_waiting: AtomicU32,
}

static mut LATCHES: *mut Latches = std::ptr::null_mut();

/// The latches' shared memory (all-zero is the initial state: no latch, generation 0).
pub const SEGMENT: crate::shmem::Segment = crate::shmem::Segment {
    name: c"pageperfect wakeups",
    size: std::mem::size_of::<Latches>,
    init: |_| {},
    attach: |memory| unsafe { LATCHES = memory as *mut Latches },
};

/// The latches, or `None` when the library was not preloaded.
pub fn latches() -> Option<&'static Latches> {
    unsafe { LATCHES.as_ref() }
}

fn set(latch: &AtomicPtr<pg_sys::Latch>) {
    let latch = latch.load(Ordering::Acquire);
    if !latch.is_null() {
        unsafe { pg_sys::SetLatch(latch) };
    }
}

impl Latches {
    /// Called by the scheduler once it runs, so that SQL and runners can wake it.
    pub fn register_scheduler(&self) {
        self.scheduler.store(unsafe { pg_sys::MyLatch }, Ordering::Release);
    }

    pub fn wake_scheduler(&self) {
        set(&self.scheduler);
    }

    /// Whether a scheduler process has registered since the server started.
    pub fn has_scheduler(&self) -> bool {
        !self.scheduler.load(Ordering::Acquire).is_null()
    }

    /// Called by pipeline worker `number` (from 1) once it runs.
    pub fn register_pipeline_worker(&self, number: u32) {
        if let Some(latch) = self.pipeline_workers.get(number as usize - 1) {
            latch.store(unsafe { pg_sys::MyLatch }, Ordering::Release);
        }
    }

    /// Wakes every pipeline worker: new work was queued.
    pub fn wake_pipeline_workers(&self) {
        self.pipeline_workers.iter().for_each(set);
    }

    /// Whether any session waits in `read_with_poll` (senders wake them only then).
    pub fn queue_readers_wait(&self) -> bool {
        self.queue_waiting.load(Ordering::Acquire) > 0
    }

    /// Wakes every session waiting in `read_with_poll`: each reads its queue once more (a
    /// session waiting on another queue finds nothing and waits again).
    pub fn wake_queue_readers(&self) {
        self.queue_waiters.iter().for_each(set);
    }
}

/// This session's place among the `read_with_poll` waiters; freed when dropped (also when an
/// error unwinds through the wait).
pub struct QueueWaiter {
    index: usize,
}

impl QueueWaiter {
    /// Registers this session's latch, or `None` when pageperfect is not preloaded or every
    /// place is taken (the caller then polls).
    pub fn register() -> Option<QueueWaiter> {
        let latches = latches()?;
        let latch = unsafe { pg_sys::MyLatch };
        let take = |index: usize, expected: *mut pg_sys::Latch| {
            latches.queue_waiters[index].compare_exchange(expected, latch, Ordering::AcqRel, Ordering::Acquire).is_ok()
        };
        let index = match (0..MAX_QUEUE_WAITERS).find(|&i| take(i, std::ptr::null_mut())) {
            Some(index) => {
                latches.queue_waiting.fetch_add(1, Ordering::AcqRel);
                index
            }
            // All taken: a session that ended while waiting (terminated: no unwinding frees its
            // place) leaves its place behind; take over one whose process is gone.
            None => (0..MAX_QUEUE_WAITERS).find(|&i| {
                let pid = latches.queue_waiter_pids[i].load(Ordering::Acquire);
                let gone = pid > 0 && unsafe { libc::kill(pid, 0) } != 0;
                gone && take(i, latches.queue_waiters[i].load(Ordering::Acquire))
            })?,
        };
        latches.queue_waiter_pids[index].store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
        Some(QueueWaiter { index })
    }
}

impl Drop for QueueWaiter {
    fn drop(&mut self) {
        if let Some(latches) = latches() {
            latches.queue_waiter_pids[self.index].store(0, Ordering::Release);
            latches.queue_waiters[self.index].store(std::ptr::null_mut(), Ordering::Release);
            latches.queue_waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Whom a transaction wakes when it commits.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Wake {
    /// Cron jobs changed or a run was queued: the scheduler reloads.
    Scheduler = 1,
    /// Pipeline work was queued: the pipeline workers claim it.
    PipelineWorkers = 2,
    /// Messages were sent: sessions waiting in `read_with_poll` read again.
    QueueReaders = 4,
}

/// Wakes the scheduler now (a runner took or finished a run, a run is to be cancelled).
pub fn wake_scheduler() {
    if let Some(latches) = latches() {
        latches.wake_scheduler();
    }
}

/// Wakes `whom` when the calling transaction commits (never when it rolls back), so that its
/// changes take effect at once rather than at the next periodic look. Does nothing when the
/// library was not preloaded.
pub fn wake_at_commit(whom: Wake) {
    static PENDING: AtomicU8 = AtomicU8::new(0);
    if latches().is_none() {
        return;
    }
    // The callbacks are registered once per transaction; later calls only add to PENDING.
    if PENDING.fetch_or(whom as u8, Ordering::AcqRel) != 0 {
        return;
    }
    register_xact_callback(PgXactCallbackEvent::Commit, || {
        let pending = PENDING.swap(0, Ordering::AcqRel);
        if let Some(latches) = latches() {
            if pending & Wake::Scheduler as u8 != 0 {
                latches.generation.fetch_add(1, Ordering::AcqRel);
                latches.wake_scheduler();
            }
            if pending & Wake::PipelineWorkers as u8 != 0 {
                latches.pipeline_generation.fetch_add(1, Ordering::AcqRel);
                latches.wake_pipeline_workers();
            }
            if pending & Wake::QueueReaders as u8 != 0 {
                latches.wake_queue_readers();
            }
        }
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || PENDING.store(0, Ordering::Release));
}

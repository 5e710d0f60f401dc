//! The shared memory of pageperfect's processes: one slot per possible job runner
//! (`pageperfect.max_running_jobs` of them), the latches of the scheduler and the pipeline
//! workers (so that SQL can wake them when it changes jobs or queues work), the latches of
//! sessions waiting in `read_with_poll` (woken when a send commits), and a counter that SQL
//! bumps when cron jobs change.
//!
//! A job's command can run in any database as any role, but the scheduler's tables live in one
//! database, so runners cannot report through SQL. Each slot is a small state machine instead;
//! every transition is a compare-and-swap on `state`, by the one side that owns it:
//!
//! ```text
//!   scheduler            runner                     scheduler
//!   Free ──► Starting ──► Idle ──► Assigned ──► Running ──► Done ──► Idle (reused by the pool)
//!                          │  ▲ scheduler       runner       runner    │
//!                          │  └────────────────────────────────────────┘
//!                          └──► Exiting ──► Free   (idle too long, or evicted for another pool)
//! ```
//!
//! A runner that exits (terminated, FATAL) moves its slot to `Free`, or to `DoneExited` with a
//! failure message when it held a run, so the scheduler records the run as failed and never
//! hands that slot more work. A runner killed with SIGKILL makes the postmaster restart every
//! process and reinitialise this memory; the scheduler then fails the runs it finds unfinished.

use pgrx::callbacks::{register_xact_callback, PgXactCallbackEvent};
use pgrx::pg_sys;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Longest `return_message` a runner hands back; longer error texts are cut at a char boundary.
pub const MESSAGE_CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    Free = 0,
    /// The scheduler registered a runner for the slot's database and role; it is connecting.
    Starting = 1,
    /// A connected runner waits for work.
    Idle = 2,
    /// The scheduler put a run in the slot and woke the runner.
    Assigned = 3,
    /// The runner executes the run's command.
    Running = 4,
    /// The run ended; its result waits for the scheduler.
    Done = 5,
    /// The run ended and the runner has exited since.
    DoneExited = 6,
    /// The runner was asked to exit, or decided to after idling.
    Exiting = 7,
}

impl SlotState {
    fn from_u32(value: u32) -> SlotState {
        use SlotState::*;
        [Free, Starting, Idle, Assigned, Running, Done, DoneExited, Exiting]
            .into_iter()
            .find(|s| *s as u32 == value)
            .unwrap_or(Free)
    }
}

#[repr(C)]
pub struct Slot {
    state: AtomicU32,
    /// Database and role the slot's runner connects as (set by the scheduler while Free).
    pub database: AtomicU32,
    pub role: AtomicU32,
    pub pid: AtomicI32,
    latch: AtomicPtr<pg_sys::Latch>,
    pub runid: AtomicI64,
    pub jobid: AtomicI64,
    /// `dsm_handle` of the segment that holds the command.
    pub command: AtomicU32,
    /// Microseconds since the PostgreSQL epoch.
    pub started_at: AtomicI64,
    pub finished_at: AtomicI64,
    pub succeeded: AtomicBool,
    /// Set by `cancel_run()` for the run in the slot; the scheduler cancels it and clears this
    /// when it hands the slot a run.
    pub cancel_requested: AtomicBool,
    message_len: AtomicU32,
    message: UnsafeCell<[u8; MESSAGE_CAPACITY]>,
}

/// The most pipeline workers `pageperfect.pipeline_workers` allows.
pub const MAX_PIPELINE_WORKERS: usize = 64;
/// Sessions that can wait in `read_with_poll` on a latch at once; more poll at their interval.
pub const MAX_QUEUE_WAITERS: usize = 256;

#[repr(C)]
pub struct Shared {
    scheduler_latch: AtomicPtr<pg_sys::Latch>,
    pipeline_latches: [AtomicPtr<pg_sys::Latch>; MAX_PIPELINE_WORKERS],
    /// Bumped at commit of every transaction that changed jobs or queued a run.
    pub generation: AtomicU64,
    /// Bumped at commit of every transaction that queued pipeline work or freed a stage slot.
    pub pipeline_generation: AtomicU64,
    /// When this memory was initialised (server start or crash restart), as a `TimestampTz`:
    /// runs queued before it had their runners die with it.
    pub initialized_at: AtomicI64,
    /// Latches of sessions waiting in `read_with_poll` (null: free), and how many are taken.
    queue_waiters: [AtomicPtr<pg_sys::Latch>; MAX_QUEUE_WAITERS],
    queue_waiter_pids: [AtomicI32; MAX_QUEUE_WAITERS],
    queue_waiting: AtomicU32,
    slot_count: u32,
    slots: [Slot; 0],
}

/// `AddinShmemInitLock`'s index in `MainLWLockArray` (storage/lwlocknames.h).
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

fn slot_count() -> usize {
    crate::config::MAX_RUNNING_JOBS.get().max(1) as usize
}

fn size(slots: usize) -> usize {
    std::mem::size_of::<Shared>() + slots * std::mem::size_of::<Slot>()
}

/// Asks the postmaster for the slots' memory; called from `_PG_init` while preloading.
pub fn request_shared_memory() {
    unsafe {
        PREV_SHMEM_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    if let Some(previous) = PREV_SHMEM_REQUEST_HOOK {
        previous();
    }
    pg_sys::RequestAddinShmemSpace(size(slot_count()));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    if let Some(previous) = PREV_SHMEM_STARTUP_HOOK {
        previous();
    }
    let slots = slot_count();
    // AddinShmemInitLock is a macro for this entry of the main LWLock array.
    let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
    pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let mut found = false;
    let shared = pg_sys::ShmemInitStruct(c"pageperfect scheduler".as_ptr(), size(slots), &mut found) as *mut Shared;
    if !found {
        // All-zero is a valid initial state: every slot Free, no latch, generation 0.
        std::ptr::write_bytes(shared as *mut u8, 0, size(slots));
        (*shared).slot_count = slots as u32;
        (*shared).initialized_at.store(pg_sys::GetCurrentTimestamp(), Ordering::Release);
    }
    SHARED = shared;
    pg_sys::LWLockRelease(init_lock);
}

/// The shared area, or `None` when the library was not preloaded.
pub fn shared() -> Option<&'static Shared> {
    unsafe { SHARED.as_ref() }
}

impl Shared {
    pub fn slots(&self) -> &[Slot] {
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.slot_count as usize) }
    }

    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots()[index]
    }

    /// Called by the scheduler once it runs, so that SQL and runners can wake it.
    pub fn register_scheduler(&self) {
        self.scheduler_latch.store(unsafe { pg_sys::MyLatch }, Ordering::Release);
    }

    pub fn wake_scheduler(&self) {
        let latch = self.scheduler_latch.load(Ordering::Acquire);
        if !latch.is_null() {
            unsafe { pg_sys::SetLatch(latch) };
        }
    }

    /// Called by pipeline worker `number` (from 1) once it runs.
    pub fn register_pipeline_worker(&self, number: u32) {
        if let Some(latch) = self.pipeline_latches.get(number as usize - 1) {
            latch.store(unsafe { pg_sys::MyLatch }, Ordering::Release);
        }
    }

    /// Wakes every pipeline worker: new work was queued.
    pub fn wake_pipeline_workers(&self) {
        for latch in &self.pipeline_latches {
            let latch = latch.load(Ordering::Acquire);
            if !latch.is_null() {
                unsafe { pg_sys::SetLatch(latch) };
            }
        }
    }

    /// Whether a scheduler process has registered since the server started.
    pub fn has_scheduler(&self) -> bool {
        !self.scheduler_latch.load(Ordering::Acquire).is_null()
    }

    /// Whether any session waits in `read_with_poll` (senders wake them only then).
    pub fn queue_readers_wait(&self) -> bool {
        self.queue_waiting.load(Ordering::Acquire) > 0
    }

    /// Wakes every session waiting in `read_with_poll`: each reads its queue once more (a
    /// session waiting on another queue finds nothing and waits again).
    pub fn wake_queue_readers(&self) {
        for latch in &self.queue_waiters {
            let latch = latch.load(Ordering::Acquire);
            if !latch.is_null() {
                unsafe { pg_sys::SetLatch(latch) };
            }
        }
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
        let shared = shared()?;
        let latch = unsafe { pg_sys::MyLatch };
        let take = |index: usize, expected: *mut pg_sys::Latch| {
            shared.queue_waiters[index].compare_exchange(expected, latch, Ordering::AcqRel, Ordering::Acquire).is_ok()
        };
        let index = match (0..MAX_QUEUE_WAITERS).find(|&i| take(i, std::ptr::null_mut())) {
            Some(index) => {
                shared.queue_waiting.fetch_add(1, Ordering::AcqRel);
                index
            }
            // All taken: a session that ended while waiting (terminated: no unwinding frees its
            // place) leaves its place behind; take over one whose process is gone.
            None => (0..MAX_QUEUE_WAITERS).find(|&i| {
                let pid = shared.queue_waiter_pids[i].load(Ordering::Acquire);
                let gone = pid > 0 && unsafe { libc::kill(pid, 0) } != 0;
                gone && take(i, shared.queue_waiters[i].load(Ordering::Acquire))
            })?,
        };
        shared.queue_waiter_pids[index].store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
        Some(QueueWaiter { index })
    }
}

impl Drop for QueueWaiter {
    fn drop(&mut self) {
        if let Some(shared) = shared() {
            shared.queue_waiter_pids[self.index].store(0, Ordering::Release);
            shared.queue_waiters[self.index].store(std::ptr::null_mut(), Ordering::Release);
            shared.queue_waiting.fetch_sub(1, Ordering::AcqRel);
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

/// Wakes `whom` when the calling transaction commits (never when it rolls back), so that its
/// changes take effect at once rather than at the next periodic look. Does nothing when the
/// library was not preloaded.
pub fn wake_at_commit(whom: Wake) {
    static PENDING: AtomicU8 = AtomicU8::new(0);
    if shared().is_none() {
        return;
    }
    // The callbacks are registered once per transaction; later calls only add to PENDING.
    if PENDING.fetch_or(whom as u8, Ordering::AcqRel) != 0 {
        return;
    }
    register_xact_callback(PgXactCallbackEvent::Commit, || {
        let pending = PENDING.swap(0, Ordering::AcqRel);
        if let Some(shared) = shared() {
            if pending & Wake::Scheduler as u8 != 0 {
                shared.generation.fetch_add(1, Ordering::AcqRel);
                shared.wake_scheduler();
            }
            if pending & Wake::PipelineWorkers as u8 != 0 {
                shared.pipeline_generation.fetch_add(1, Ordering::AcqRel);
                shared.wake_pipeline_workers();
            }
            if pending & Wake::QueueReaders as u8 != 0 {
                shared.wake_queue_readers();
            }
        }
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || PENDING.store(0, Ordering::Release));
}

impl Slot {
    pub fn state(&self) -> SlotState {
        SlotState::from_u32(self.state.load(Ordering::Acquire))
    }

    /// Moves `from` → `to`; false when another process changed the state first.
    pub fn transition(&self, from: SlotState, to: SlotState) -> bool {
        self.state
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Called by a runner once connected: from now on the scheduler can wake it.
    pub fn register_runner(&self) {
        self.pid.store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
        self.latch.store(unsafe { pg_sys::MyLatch }, Ordering::Release);
    }

    pub fn wake_runner(&self) {
        let latch = self.latch.load(Ordering::Acquire);
        if !latch.is_null() {
            unsafe { pg_sys::SetLatch(latch) };
        }
    }

    /// Forgets the runner before the slot is handed to a new one.
    pub fn clear_runner(&self) {
        self.latch.store(std::ptr::null_mut(), Ordering::Release);
        self.pid.store(0, Ordering::Release);
    }

    /// Stores a run's outcome; the runner calls this before moving to Done.
    pub fn set_result(&self, succeeded: bool, message: &str, finished_at: i64) {
        let mut end = message.len().min(MESSAGE_CAPACITY);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        // Only the runner writes the buffer, and only while it owns the run (Assigned/Running).
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), self.message.get() as *mut u8, end) };
        self.message_len.store(end as u32, Ordering::Release);
        self.succeeded.store(succeeded, Ordering::Release);
        self.finished_at.store(finished_at, Ordering::Release);
    }

    /// The outcome stored by `set_result`; read by the scheduler once the slot is Done.
    pub fn result_message(&self) -> String {
        let len = self.message_len.load(Ordering::Acquire) as usize;
        let bytes = unsafe { std::slice::from_raw_parts(self.message.get() as *const u8, len.min(MESSAGE_CAPACITY)) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

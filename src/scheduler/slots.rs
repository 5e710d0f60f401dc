//! The scheduler's shared memory with its runners: one slot per possible job runner
//! (`pageperfect.max_running_jobs` of them). (The latches by which SQL wakes the scheduler are
//! `crate::wakeup`'s.)
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

use pgrx::pg_sys;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, Ordering};

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

#[repr(C)]
pub struct Shared {
    /// When this memory was initialised (server start or crash restart), as a `TimestampTz`:
    /// runs queued before it had their runners die with it.
    pub initialized_at: AtomicI64,
    slot_count: u32,
    slots: [Slot; 0],
}

static mut SHARED: *mut Shared = std::ptr::null_mut();

/// The slots' shared memory (all-zero is a valid initial state: every slot Free).
pub const SEGMENT: crate::shmem::Segment = crate::shmem::Segment {
    name: c"pageperfect scheduler",
    size: || size(slot_count()),
    init: |memory| unsafe {
        let shared = memory as *mut Shared;
        (*shared).slot_count = slot_count() as u32;
        (*shared).initialized_at.store(pg_sys::GetCurrentTimestamp(), Ordering::Release);
    },
    attach: |memory| unsafe { SHARED = memory as *mut Shared },
};

fn slot_count() -> usize {
    crate::config::MAX_RUNNING_JOBS.get().max(1) as usize
}

fn size(slots: usize) -> usize {
    std::mem::size_of::<Shared>() + slots * std::mem::size_of::<Slot>()
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

//! Shared memory segments of pageperfect's own: each module that owns one (the scheduler's
//! runner slots, the wake-up latches) describes it as a `Segment`, and `_PG_init` asks the
//! postmaster for all of them here, with one pair of hooks.

use pgrx::pg_sys;
use std::ffi::CStr;

/// `AddinShmemInitLock`'s index in `MainLWLockArray` (storage/lwlocknames.h).
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

/// A named segment and how its owner sets it up.
pub struct Segment {
    pub name: &'static CStr,
    /// Its size in bytes (read once, while the postmaster sizes shared memory).
    pub size: fn() -> usize,
    /// Fills a new segment, which comes zeroed (not called when the segment exists already).
    pub init: unsafe fn(*mut u8),
    /// Hands the segment to its owner, in every process that loads the library.
    pub attach: unsafe fn(*mut u8),
}

static mut SEGMENTS: &[Segment] = &[];
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Asks the postmaster for `segments`; called from `_PG_init` while preloading.
pub fn request(segments: &'static [Segment]) {
    unsafe {
        SEGMENTS = segments;
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
    for segment in SEGMENTS {
        pg_sys::RequestAddinShmemSpace((segment.size)());
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    if let Some(previous) = PREV_SHMEM_STARTUP_HOOK {
        previous();
    }
    // AddinShmemInitLock is a macro for this entry of the main LWLock array.
    let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
    pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
    for segment in SEGMENTS {
        let size = (segment.size)();
        let mut found = false;
        let memory = pg_sys::ShmemInitStruct(segment.name.as_ptr(), size, &mut found) as *mut u8;
        if !found {
            std::ptr::write_bytes(memory, 0, size);
            (segment.init)(memory);
        }
        (segment.attach)(memory);
    }
    pg_sys::LWLockRelease(init_lock);
}

//! Threads that a backend or worker starts for work of its own (the pipeline's tokio runtime,
//! DBSCAN's search helpers): they never call into Postgres, and must not run its signal handlers.

/// Blocks every signal in the calling thread, so that Postgres's handlers run on the process's
/// own thread only (a handler on another thread would touch Postgres from outside it).
pub fn block_signals() {
    // SAFETY: sigfillset fills the set it is given; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

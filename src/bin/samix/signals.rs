//! Ctrl-C and SIGTERM during `samix train`: the first signal asks the run to stop at the next
//! step boundary and write a checkpoint `--resume` continues from; a second one exits at once
//! (the checkpoint files are written under temporary names and renamed, so none is left half).
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by the first signal; the training loop polls it between steps.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() {
    #[cfg(unix)]
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only touches atomics and calls async-signal-safe functions
        // (`write`, `_exit`); the sigaction struct is fully initialised before use.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The exit code for a run stopped by a signal: 128 + the signal's number, as a shell reports a
/// process killed by it (130 for Ctrl-C, 143 for SIGTERM).
pub fn exit_code() -> i32 {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => 1,
        signal => 128 + signal,
    }
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        let msg = b"\nsamix: second signal, exiting now (resume from the last checkpoint)\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(128 + signal);
        }
    }
    RECEIVED.store(signal, Ordering::SeqCst);
    let msg = b"\nsamix: stopping after this step to write a checkpoint (signal again to exit at once)\n";
    // SAFETY: write(2) is async-signal-safe.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

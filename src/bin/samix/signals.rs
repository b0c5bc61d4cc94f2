//! Ctrl-C and SIGTERM during `samix train`. Once training is under way, the first signal asks
//! the run to stop at the next step boundary and write a checkpoint `--resume` continues from;
//! a second one exits at once (checkpoints are written under temporary names and renamed, so
//! none is left half). Before training starts (data, model), nothing is lost by stopping, and
//! the first signal exits at once.
use samix::train::StopSignal;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The stop request the training loop polls between steps.
pub static STOP: StopSignal = StopSignal::new();
/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the "stopping after this step" notice is printed (rank 0 of a multi-process run
/// prints it for all).
static NOTICE: AtomicBool = AtomicBool::new(true);

/// Installs the handler for SIGINT and SIGTERM; `notice`: print the stop notice.
pub fn install(notice: bool) {
    NOTICE.store(notice, Ordering::SeqCst);
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

/// Writes a message to stderr from the handler.
#[cfg(unix)]
fn say(msg: &[u8]) {
    // SAFETY: write(2) is async-signal-safe; the buffer outlives the call.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    // The signal is recorded before the stop is requested, so the exit code is never unknown.
    let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let again = STOP.request();
    if again || !STOP.is_armed() {
        say(if again {
            b"\nsamix: second signal, exiting now (resume from the last checkpoint)\n"
        } else {
            b"\nsamix: stopped before training started\n"
        });
        // SAFETY: _exit(2) is async-signal-safe.
        unsafe { libc::_exit(128 + signal) };
    }
    if NOTICE.load(Ordering::SeqCst) {
        say(b"\nsamix: stopping after this step to write a checkpoint (signal again to exit at once)\n");
    }
}

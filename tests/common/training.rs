//! The `samix` binary in a child process whose stderr lines arrive over a channel, so a test can
//! wait (always with a deadline) for a line, signal the process, and collect its exit and output.
use std::ffi::OsStr;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any wait on a child may take before the test fails (no test hangs).
const DEADLINE: Duration = Duration::from_secs(300);

/// `samix` running in a child process.
pub struct Training {
    child: std::process::Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Training {
    /// `samix train --device cpu --config CONFIG --out OUT [--resume]`.
    pub fn start(config: &Path, out: &Path, resume: bool) -> Training {
        let mut args: Vec<&OsStr> = ["train", "--device", "cpu", "--config"].map(OsStr::new).to_vec();
        args.extend([config.as_os_str(), OsStr::new("--out"), out.as_os_str()]);
        if resume {
            args.push(OsStr::new("--resume"));
        }
        Training::spawn(&args)
    }

    /// `samix ARGS...`, stdout discarded, stderr collected.
    pub fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Training {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_samix"));
        cmd.args(args);
        let mut child = cmd.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (pipe, all) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                all.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Training { child, lines, stderr }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for a stderr line containing `text`.
    pub fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + DEADLINE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line with `{text}` in:\n{}", self.stderr.lock().unwrap());
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits (bounded) for the exit; returns the exit code (`None`: killed by a signal) and stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("samix did not exit:\n{}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends with the pipe; give it a bounded moment to take the last lines.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.lines.recv_timeout(Duration::from_millis(50)).is_ok() && Instant::now() < deadline {}
        let text = self.stderr.lock().unwrap().clone();
        (status.code(), text)
    }
}

impl Drop for Training {
    /// A test that fails part-way leaves no process behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

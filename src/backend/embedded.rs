//! The memcached that rend starts itself when no `--l1` is given: found on
//! PATH, listening on a unix socket in a private directory, restarted if it
//! dies, stopped when rend exits.
//!
//! memcached runs under a small `sh` wrapper that holds a pipe from rend and
//! kills memcached when the pipe closes. That way memcached goes away even
//! when rend itself is killed with SIGKILL and has no chance to clean up.
//!
//! The wrapper runs in a process group of its own, so a signal to rend's
//! group (Ctrl-C in a terminal, `kill -TERM -PGID`) reaches rend alone: rend
//! drains its clients with memcached still up, then stops it. If memcached
//! exits anyway once rend is shutting down (a service manager that signals
//! every process of the service), that is the end, not a crash: it is not
//! restarted and no warning is logged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Settings of the embedded memcached.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The memcached executable.
    pub program: String,
    /// Memory limit, megabytes (`-m`).
    pub memory_mb: u32,
    /// Item size limit, bytes (`-I`).
    pub item_size: usize,
}

/// A supervised memcached. Dropping it stops memcached and removes its
/// directory.
pub struct Embedded {
    dir: PathBuf,
    socket: PathBuf,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

// The wrapper: fd 3 keeps rend's pipe; a watcher kills memcached at its EOF;
// the shell exits when memcached does, so rend sees the exit and restarts it.
const WRAPPER: &str = r#"exec 3<&0 0</dev/null
"$0" "$@" 3<&- &
m=$!
( read -r _ <&3; kill "$m" 2>/dev/null ) &
exec 3<&-
wait "$m"
"#;

/// A running wrapper and the write end of its pipe. tokio's `Child::wait`
/// closes a child's stdin, so the pipe is held apart from the child.
struct Running {
    child: Child,
    pipe: Option<tokio::process::ChildStdin>,
}

fn spawn(opts: &EmbeddedOptions, socket: &Path) -> std::io::Result<Running> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg(&opts.program)
        .arg("-s")
        .arg(socket)
        .arg("-a")
        .arg("0700")
        .arg("-m")
        .arg(opts.memory_mb.to_string())
        .arg("-I")
        .arg(opts.item_size.to_string())
        .arg("-U")
        .arg("0")
        .arg("-u")
        .arg("root")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pipe = child.stdin.take();
    Ok(Running { child, pipe })
}

impl Embedded {
    /// Start memcached and wait (up to five seconds) for its socket.
    pub async fn start(opts: EmbeddedOptions) -> std::io::Result<Embedded> {
        let dir = std::env::temp_dir().join(format!(
            "rend-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("memcached.sock");
        let mut running = spawn(&opts, &socket)?;
        let child = &mut running.child;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(std::io::Error::other(format!(
                    "{} exited at start ({status}); is memcached installed?",
                    opts.program
                )));
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                let _ = std::fs::remove_dir_all(&dir);
                return Err(std::io::Error::other(
                    "memcached did not create its socket within 5 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(socket = %socket.display(), "started embedded memcached");
        let (stop, stop_rx) = watch::channel(false);
        let stopping = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(supervise(
            opts,
            socket.clone(),
            running,
            stop_rx,
            stopping.clone(),
        ));
        Ok(Embedded {
            dir,
            socket,
            stop,
            task: Some(task),
            stopping,
        })
    }

    /// A handle that tells the supervisor rend is shutting down: from then
    /// on memcached exiting is expected (set it when the signal arrives).
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stop memcached and wait for it to exit.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Restart memcached whenever it exits, until told to stop.
async fn supervise(
    opts: EmbeddedOptions,
    socket: PathBuf,
    mut running: Running,
    mut stop: watch::Receiver<bool>,
    stopping: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        tokio::select! {
            status = running.child.wait() => {
                if stopping.load(Ordering::Acquire) {
                    tracing::info!(tier = "L1", "embedded memcached stopped with rend ({status:?})");
                    return;
                }
                tracing::warn!(tier = "L1", "embedded memcached exited ({status:?}); restarting");
            }
            _ = stop.changed() => {
                // Closing the pipe makes the wrapper stop memcached (SIGTERM)
                // and exit once it has; kill only if that hangs.
                drop(running.pipe.take());
                if tokio::time::timeout(Duration::from_secs(5), running.child.wait()).await.is_err() {
                    let _ = running.child.kill().await;
                }
                return;
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            let _ = std::fs::remove_file(&socket);
            match spawn(&opts, &socket) {
                Ok(r) => {
                    running = r;
                    backoff = Duration::from_millis(50);
                    break;
                }
                Err(e) => {
                    tracing::warn!(tier = "L1", "cannot restart memcached: {e}");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

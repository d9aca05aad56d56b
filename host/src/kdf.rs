//! The KDF step of a password check, natively on threads of its own ([`KdfPool`]).

use granted_policy::credentials::kdf::KdfParams;
use std::sync::Arc;
use std::time::Duration;

/// Why the KDF gave no key.
pub(crate) enum KdfError {
    /// Too many password checks wait already, or none finished in time: try again later.
    QueueFull,
    /// The parameters are out of bounds (a module asked for something the host refuses).
    Refused(String),
}

/// The KDF step on its own threads, never on the async runtime: a bounded queue, and a quick
/// refusal when it is full.
pub(crate) struct KdfPool {
    jobs: tokio::sync::mpsc::Sender<KdfJob>,
}

struct KdfJob {
    params: KdfParams,
    password: String,
    reply: tokio::sync::oneshot::Sender<Result<Vec<u8>, String>>,
}

impl KdfPool {
    pub(crate) fn start(threads: usize, queue: usize) -> KdfPool {
        let (jobs, receiver) = tokio::sync::mpsc::channel::<KdfJob>(queue.max(1));
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            let _ = std::thread::Builder::new()
                .name(format!("kdf-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = {
                            let mut guard = receiver.lock().unwrap_or_else(|p| p.into_inner());
                            guard.blocking_recv()
                        };
                        let Some(job) = job else { return };
                        // Tests wait for this line to know a login is in flight (no secret in it).
                        tracing::debug!("a password check started on a KDF thread");
                        let _ = job.reply.send(native_kdf(&job.params, &job.password));
                    }
                });
        }
        KdfPool { jobs }
    }

    /// Password requests waiting for a thread.
    pub(crate) fn waiting(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// The derived key, or why there is none.
    pub(crate) async fn run(
        &self,
        params: KdfParams,
        password: String,
    ) -> Result<Vec<u8>, KdfError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(KdfJob {
                params,
                password,
                reply,
            })
            .map_err(|_| KdfError::QueueFull)?;
        match tokio::time::timeout(Duration::from_secs(30), answer).await {
            Ok(Ok(Ok(derived))) => Ok(derived),
            Ok(Ok(Err(message))) => Err(KdfError::Refused(message)),
            _ => Err(KdfError::QueueFull),
        }
    }
}

/// Runs this thread (a KDF thread) at a lower priority than the request threads, so that a
/// flood of logins, which keeps every KDF thread busy, does not starve the other requests of
/// CPU: they still answer within a few milliseconds while the logins take their turn.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority with PRIO_PROCESS and 0 changes only the calling thread's nice
        // value on Linux; it touches no memory.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if rc != 0 {
            tracing::warn!("could not lower the KDF thread's priority");
        }
    }
}

/// PBKDF2 natively, with the module's parameters: the policy crate's own KDF compiled for this
/// machine (SHA-NI where the CPU has it), not the wasm copy.
fn native_kdf(params: &KdfParams, password: &str) -> Result<Vec<u8>, String> {
    params
        .derive(password.as_bytes())
        .ok_or_else(|| "KDF parameters out of bounds".to_string())
}

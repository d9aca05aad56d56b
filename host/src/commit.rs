//! Group commit: every decision's effects and audit entry made durable by one writer thread.

use crate::store::{Applied, Job, Store};

/// Group commit: one writer thread takes every decision waiting and makes them durable in one
/// transaction, then answers each. Concurrent requests share the fsync; one alone pays it.
pub(crate) struct Committer {
    jobs: tokio::sync::mpsc::Sender<(Job, tokio::sync::oneshot::Sender<Result<Applied, String>>)>,
}

impl Committer {
    const MAX_BATCH: usize = 256;

    pub(crate) fn start(store: Store) -> Committer {
        let (jobs, mut receiver) = tokio::sync::mpsc::channel::<(
            Job,
            tokio::sync::oneshot::Sender<Result<Applied, String>>,
        )>(4096);
        let _ = std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                while let Some(first) = receiver.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < Self::MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let (work, replies): (Vec<Job>, Vec<_>) = batch.into_iter().unzip();
                    match store.apply_batch(&work) {
                        Ok(outcomes) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                        }
                        Err(e) => {
                            let message = format!("{e:#}");
                            for reply in replies {
                                let _ = reply.send(Err(message.clone()));
                            }
                        }
                    }
                }
            });
        Committer { jobs }
    }

    /// Hands `job` to the writer; answers once it is durable (or refused).
    pub(crate) async fn submit(&self, job: Job) -> anyhow::Result<Applied> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send((job, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the group-commit writer stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the group-commit writer stopped"))?
            .map_err(|e| anyhow::anyhow!(e))
    }
}

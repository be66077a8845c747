//! Starts and stops the long-running parts in one process: the scanner loop
//! and the delivery workers (`serve` runs both, `scanner` and `worker` one).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::sender::Sender;
use crate::delivery::settings::WorkerSettings;
use crate::delivery::workers;
use crate::error::{AppError, AppResult};
use crate::scanner;
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub scanner: bool,
    pub sender: bool,
}

pub struct Pipeline {
    shutdown: CancellationToken,
    scanner: Option<JoinHandle<()>>,
    sender: Option<JoinHandle<AppResult<()>>>,
}

impl Pipeline {
    pub fn start(store: &Store, cfg: &Config, parts: Parts) -> AppResult<Pipeline> {
        let shutdown = CancellationToken::new();
        let scanner = parts.scanner.then(|| {
            tokio::spawn(scanner::run_loop(
                store.clone(),
                cfg.clone(),
                shutdown.clone(),
            ))
        });
        let sender = if parts.sender {
            let settings = WorkerSettings::from_config(cfg);
            let sender = Arc::new(Sender::new(
                store.clone(),
                cfg,
                &settings,
                shutdown.clone(),
            )?);
            Some(tokio::spawn(workers::run_workers(
                store.clone(),
                sender,
                settings,
                shutdown.clone(),
            )))
        } else {
            None
        };
        Ok(Pipeline {
            shutdown,
            scanner,
            sender,
        })
    }

    /// False once the sender stopped by itself (its error shows in `stop`).
    pub fn sender_running(&self) -> bool {
        self.sender.as_ref().is_some_and(|h| !h.is_finished())
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until a part stops by itself (an error) or `stop` is requested.
    pub async fn wait(&mut self) -> AppResult<()> {
        let sender = async {
            match self.sender.as_mut() {
                Some(h) => match h.await {
                    Ok(r) => r,
                    Err(e) => Err(AppError::internal(format!("sender task failed: {e}"))),
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sender => { self.sender = None; r }
            _ = self.shutdown.cancelled() => Ok(()),
        }
    }

    /// Stops taking new work and waits for running attempts to finish.
    pub async fn stop(mut self) -> AppResult<()> {
        self.shutdown.cancel();
        if let Some(h) = self.scanner.take() {
            let _ = h.await;
        }
        if let Some(h) = self.sender.take() {
            match h.await {
                Ok(r) => r?,
                Err(e) => return Err(AppError::internal(format!("sender task failed: {e}"))),
            }
        }
        Ok(())
    }
}

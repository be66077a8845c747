//! `payhook serve|worker|scanner`: the long-running processes. They stop
//! gracefully on SIGINT/SIGTERM: no new jobs, running attempts finish.

use crate::config::Config;
use crate::error::AppResult;
use crate::pipeline::{Parts, Pipeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Worker,
    Scanner,
}

pub async fn run(cfg: Config, role: Role) -> AppResult<()> {
    if role == Role::Serve {
        cfg.require_admin_token()?;
    }
    let store = super::open(&cfg).await?;
    let parts = Parts {
        scanner: role != Role::Worker,
        sender: role != Role::Scanner,
    };
    let mut pipeline = Pipeline::start(&store, &cfg, parts)?;
    tracing::info!(?role, database = %crate::store::redact_url(&cfg.database.url), "payhook started");
    let token = pipeline.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    let res = pipeline.wait().await;
    let stopped = pipeline.stop().await;
    store.close().await;
    res.and(stopped)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

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
    let token = match role {
        Role::Serve => Some(cfg.require_admin_token()?.to_string()),
        _ => None,
    };
    cfg.require_secrets_key()?;
    let admin = match token {
        Some(token) => Some((crate::admin::bind(&cfg.admin.listen).await?, token)),
        None => None,
    };
    crate::metrics::install();
    raise_open_files_limit();
    let store = crate::store::Store::open(&cfg).await?;
    crate::store::operator::sync(&store, &cfg.operator, crate::time::now_ms()).await?;
    let parts = Parts {
        scanner: role != Role::Worker,
        sender: role != Role::Scanner,
    };
    let mut pipeline = Pipeline::start(&store, &cfg, parts)?;
    tracing::info!(?role, database = %crate::urls::redact_url(&cfg.database.url), "payhook started");
    let token = pipeline.shutdown_token();
    let admin = admin.map(|(listener, admin_token)| {
        let state = crate::admin::AppState {
            store: store.clone(),
            cfg: std::sync::Arc::new(cfg.clone()),
        };
        let stop = token.clone();
        tokio::spawn(async move {
            let r = crate::web::serve(listener, state, admin_token, stop.clone()).await;
            // The admin API is part of `serve`: if it fails, the process stops.
            stop.cancel();
            r
        })
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    let mut res = pipeline.wait().await;
    if let Some(h) = admin {
        pipeline.shutdown_token().cancel();
        let r = h
            .await
            .map_err(|e| crate::error::AppError::internal(format!("admin task failed: {e}")));
        if res.is_ok() {
            res = r.and_then(|x| x);
        }
    }
    let stopped = pipeline.stop().await;
    store.close().await;
    res.and(stopped)
}

/// Raises the soft limit on open files to the hard limit: every delivery,
/// pooled connection and admin client needs one, and the usual soft limit
/// (1,024) is far below what a busy sender holds.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(open_files = n, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
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

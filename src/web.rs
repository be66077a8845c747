//! What `payhook serve` answers on `admin.listen`: the admin API and the web
//! console on one listener, sharing one token check. The one place that
//! knows both, so neither imports the other's router.

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AppState, Auth};
use crate::console::{self, ConsoleState};
use crate::error::AppResult;

/// The API (bearer token or API key) and the console (session cookie).
pub fn router(state: AppState, token: &str) -> Router {
    let auth = Auth::new(token, state.store.clone());
    let console = console::router(ConsoleState {
        app: state.clone(),
        auth: auth.clone(),
    });
    admin::router(state, auth).merge(console)
}

/// Serves both until `shutdown`, on the admin listener's hardened loop
/// (`admin::serve_router`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    token: String,
    shutdown: CancellationToken,
) -> AppResult<()> {
    admin::serve_router(listener, router(state, &token), shutdown).await
}

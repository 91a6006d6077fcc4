//! `GET /healthz` (the process is alive) and `GET /readyz` (the store is reachable, and the
//! audit log is not refusing requests).
use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use crate::{error::ApiError, state::AppState};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    // In `fail_closed` mode a server that cannot record refuses every request: not ready.
    if state.audit.refusing() {
        return Err(portcullis_http::edge::unavailable());
    }
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "store not reachable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the store is not reachable",
            ))
        }
    }
}

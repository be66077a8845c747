//! `GET /openapi.json`: the API describes itself. The route table here is
//! the one list of routes the document, the README and the tests use.

use crate::domain::{DeadReason, SignatureScheme};
use axum::Json;
use serde_json::{json, Map, Value};

/// (method, path, summary, request body schema, success status)
pub const ROUTES: &[(&str, &str, &str, Option<&str>, u16)] = &[
    ("get", "/healthz", "Liveness (no token needed)", None, 200),
    (
        "get",
        "/readyz",
        "Readiness: the database answers",
        None,
        200,
    ),
    (
        "get",
        "/metrics",
        "Prometheus metrics (text format)",
        None,
        200,
    ),
    ("get", "/openapi.json", "This document", None, 200),
    (
        "post",
        "/v1/merchants",
        "Register a merchant; returns its secret (only now)",
        Some("NewMerchant"),
        201,
    ),
    (
        "get",
        "/v1/merchants",
        "List merchants (limit, cursor)",
        None,
        200,
    ),
    ("get", "/v1/merchants/{id}", "Show a merchant", None, 200),
    (
        "patch",
        "/v1/merchants/{id}",
        "Change a merchant's settings",
        Some("MerchantPatch"),
        200,
    ),
    (
        "post",
        "/v1/merchants/{id}/rotate-secret",
        "New secret; the old one signs for `overlap` (24h)",
        Some("Rotate"),
        200,
    ),
    (
        "post",
        "/v1/merchants/{id}/test",
        "Send a webhook.test event",
        None,
        202,
    ),
    (
        "post",
        "/v1/merchants/{id}/enable",
        "Re-enable a disabled endpoint",
        None,
        200,
    ),
    (
        "post",
        "/v1/payments",
        "Register a payment",
        Some("NewPayment"),
        201,
    ),
    (
        "get",
        "/v1/payments/{id}",
        "Show a payment with its events",
        None,
        200,
    ),
    (
        "post",
        "/v1/payments/{id}/detections",
        "Report a chain sighting (pending → detected)",
        Some("Detection"),
        200,
    ),
    (
        "get",
        "/v1/chains",
        "Configured chains and their heads",
        None,
        200,
    ),
    (
        "post",
        "/v1/chains/{chain}/head",
        "Set a chain's head height",
        Some("Head"),
        200,
    ),
    ("post", "/v1/scans", "Scan now; returns counts", None, 200),
    (
        "get",
        "/v1/events/{id}",
        "Show an event and the exact body sent",
        None,
        200,
    ),
    (
        "post",
        "/v1/events/{id}/replay",
        "Deliver an event again (same webhook-id)",
        None,
        202,
    ),
    (
        "get",
        "/v1/deliveries",
        "List deliveries (status, merchant_id, endpoint_id, event_id, event_type, payment_id, since, until, limit, cursor)",
        None,
        200,
    ),
    (
        "get",
        "/v1/deliveries/{id}",
        "Show a delivery with its attempts",
        None,
        200,
    ),
    (
        "get",
        "/v1/dead-letters",
        "List dead letters (merchant_id, endpoint_id, reason, since, until, limit, cursor)",
        None,
        200,
    ),
    (
        "post",
        "/v1/dead-letters/{id}/resubmit",
        "Resubmit one dead letter (409 if already resubmitted)",
        None,
        200,
    ),
    (
        "post",
        "/v1/dead-letters/resubmit",
        "Resubmit every match of the filters; returns the count",
        Some("DlqFilter"),
        200,
    ),
    (
        "post",
        "/v1/merchants/{id}/api-keys",
        "Issue a merchant API key ({name}); returns it (only now)",
        None,
        201,
    ),
    (
        "get",
        "/v1/merchants/{id}/api-keys",
        "A merchant's API keys (never the keys)",
        None,
        200,
    ),
    (
        "delete",
        "/v1/api-keys/{id}",
        "Revoke an API key",
        None,
        200,
    ),
    (
        "post",
        "/v1/merchants/{id}/endpoints",
        "Add an endpoint to a merchant; returns its secret (only now)",
        Some("NewEndpoint"),
        201,
    ),
    (
        "get",
        "/v1/merchants/{id}/endpoints",
        "A merchant's endpoints, the primary (oldest) first",
        None,
        200,
    ),
    ("get", "/v1/endpoints/{id}", "Show an endpoint", None, 200),
    (
        "patch",
        "/v1/endpoints/{id}",
        "Change an endpoint's settings",
        Some("EndpointPatch"),
        200,
    ),
    (
        "delete",
        "/v1/endpoints/{id}",
        "Delete an endpoint; its pending deliveries go to the DLQ",
        None,
        200,
    ),
    (
        "post",
        "/v1/endpoints/{id}/rotate-secret",
        "New secret; the old one signs for `overlap` (24h)",
        Some("Rotate"),
        200,
    ),
    (
        "get",
        "/v1/endpoints/{id}/secret",
        "Show the endpoint's signing secret (audited)",
        None,
        200,
    ),
    (
        "post",
        "/v1/endpoints/{id}/test",
        "Send a webhook.test event to this endpoint",
        None,
        202,
    ),
    (
        "post",
        "/v1/endpoints/{id}/enable",
        "Turn a disabled endpoint back on",
        None,
        200,
    ),
    (
        "post",
        "/v1/endpoints/{id}/disable",
        "Stop sending to an endpoint until enabled (deliveries wait)",
        None,
        200,
    ),
    (
        "get",
        "/v1/endpoints/{id}/health",
        "Circuit state, last success, failing since, attempts over 24 h",
        None,
        200,
    ),
    (
        "post",
        "/v1/endpoints/{id}/recover",
        "Resubmit the endpoint's dead letters of a window; returns the count",
        Some("Recover"),
        200,
    ),
    (
        "get",
        "/v1/audit",
        "Who changed what (actor, action, object_id, since, until, limit, cursor)",
        None,
        200,
    ),
];

fn schemas() -> Value {
    let s = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    let string = json!({"type": "string"});
    let nullable = json!({"type": ["string", "null"]});
    json!({
        "NewMerchant": s(json!({
            "name": string, "webhook_url": string,
            "signature_scheme": {"type": "string", "enum": SignatureScheme::ALL},
            "signature_header": string, "signature_prefix": string,
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "event_types": {"type": "array", "items": string},
            "rate_limit_per_sec": {"type": "integer", "minimum": 1}
        }), &["name", "webhook_url"]),
        "MerchantPatch": s(json!({
            "name": string, "webhook_url": string, "signature_scheme": string,
            "signature_header": nullable, "signature_prefix": nullable,
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "event_types": {"type": ["array", "null"], "items": string},
            "rate_limit_per_sec": {"type": ["integer", "null"]}
        }), &[]),
        "NewEndpoint": s(json!({
            "url": string, "description": string,
            "signature_scheme": {"type": "string", "enum": SignatureScheme::ALL},
            "signature_header": string, "signature_prefix": string,
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "event_types": {"type": "array", "items": string},
            "rate_limit_per_sec": {"type": "integer", "minimum": 1}
        }), &["url"]),
        "EndpointPatch": s(json!({
            "url": string, "description": nullable, "signature_scheme": string,
            "signature_header": nullable, "signature_prefix": nullable,
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "event_types": {"type": ["array", "null"], "items": string},
            "rate_limit_per_sec": {"type": ["integer", "null"]}
        }), &[]),
        "Recover": s(json!({
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"}
        }), &["since"]),
        "Rotate": s(json!({"overlap": {"type": "string", "examples": ["24h"]}}), &[]),
        "NewPayment": s(json!({
            "merchant_id": string, "reference": string, "chain": string, "token": string,
            "address": string, "expected_amount": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
            "callback_url": string, "expires_at": {"type": "string", "format": "date-time"}
        }), &["merchant_id", "reference", "chain", "address", "expected_amount"]),
        "Detection": s(json!({
            "tx_hash": string, "amount": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
            "block_number": {"type": "integer", "minimum": 0}
        }), &["tx_hash", "amount", "block_number"]),
        "Head": s(json!({"height": {"type": "integer", "minimum": 0}}), &["height"]),
        "DlqFilter": s(json!({
            "merchant_id": string, "endpoint_id": string,
            "reason": {"type": "string", "enum": DeadReason::ALL},
            "since": {"type": "string", "format": "date-time"}, "until": {"type": "string", "format": "date-time"}
        }), &[]),
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": string, "message": string}, "required": ["code", "message"]}}, "required": ["error"]}
    })
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, body, status) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                status.to_string(): {"description": "OK"},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if *path != "/healthz" {
            op["security"] = json!([{"bearer": []}]);
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(schema) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "payhook admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

//! A small EVM JSON-RPC client: the three read calls the scanner needs
//! (`eth_blockNumber`, `eth_getTransactionReceipt`, `eth_getTransactionByHash`).
//! Lookups go out as JSON-RPC batches of at most [`LOOKUPS_PER_BATCH`]
//! payments (≤ 200 calls per HTTP request, well under geth's default batch
//! limit of 1000), so a scan of many payments is a few HTTP requests.
//!
//! Any failure — timeout, refused connection, non-2xx status, a JSON-RPC
//! error, a body that is not the answer asked for — is a [`NodeError`], and
//! the scanner then changes nothing on that chain. The node URL often carries
//! an API key (Infura, Alchemy), so only its origin ever reaches a log line.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{AppError, AppResult};

pub const LOOKUPS_PER_BATCH: usize = 100;
/// A batch of 100 receipts with logs stays far below this; anything larger
/// is not an answer we asked for.
const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    Timeout,
    Unreachable(String),
    HttpStatus(u16),
    Rpc { code: i64, message: String },
    BadResponse(String),
    HeadBackwards { known: i64, got: i64 },
}

impl NodeError {
    /// A short, bounded label (metrics, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Timeout => "timeout",
            NodeError::Unreachable(_) => "unreachable",
            NodeError::HttpStatus(_) => "http_status",
            NodeError::Rpc { .. } => "rpc_error",
            NodeError::BadResponse(_) => "bad_response",
            NodeError::HeadBackwards { .. } => "head_backwards",
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Timeout => write!(f, "the node did not answer in time"),
            NodeError::Unreachable(why) => write!(f, "cannot reach the node: {why}"),
            NodeError::HttpStatus(s) => write!(f, "the node answered HTTP {s}"),
            NodeError::Rpc { code, message } => write!(f, "JSON-RPC error {code}: {message}"),
            NodeError::BadResponse(why) => write!(f, "not a JSON-RPC answer: {why}"),
            NodeError::HeadBackwards { known, got } => write!(
                f,
                "the node's head {got} is below the head {known} already seen (a lagging or \
                 different node); waiting until it catches up"
            ),
        }
    }
}

/// What a receipt says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub block_number: i64,
    pub success: bool,
    /// Its ERC-20 `Transfer` logs (of any contract; `removed` ones left out).
    pub transfers: Vec<TokenTransfer>,
}

/// One `Transfer(address,address,uint256)` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTransfer {
    /// Lowercase `0x…` address of the contract that emitted it.
    pub contract: String,
    /// Lowercase `0x…` recipient.
    pub to: String,
    /// The amount in base units, as a decimal integer string.
    pub value: String,
}

/// `keccak256("Transfer(address,address,uint256)")`, the first topic of
/// every ERC-20 transfer log: a constant, so no hashing is needed here.
pub const TRANSFER_TOPIC: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// The parts of a transaction a native-coin payment is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Lowercase `0x…` recipient; `None` for a contract creation.
    pub to: Option<String>,
    /// The value in wei, as a decimal integer string.
    pub value_wei: String,
}

/// One payment's lookup: the receipt (`None`: not on the chain now) and,
/// when asked for, the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub receipt: Option<Receipt>,
    pub tx: Option<Transfer>,
}

pub struct Node {
    http: reqwest::Client,
    url: String,
    origin: String,
}

impl Node {
    pub fn new(url: &str, timeout: Duration) -> AppResult<Node> {
        let parsed = url::Url::parse(url)
            .map_err(|_| AppError::config("rpc_url: expected an http:// or https:// URL"))?;
        let origin = crate::urls::origin_of(&parsed);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("payhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AppError::internal(format!("building the node client: {e}")))?;
        Ok(Node {
            http,
            url: url.to_string(),
            origin,
        })
    }

    /// `scheme://host:port` of the node: safe to log.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The head height (`eth_blockNumber`).
    pub async fn head(&self) -> Result<i64, NodeError> {
        let answer = self.post(&call(1, "eth_blockNumber", json!([]))).await?;
        let result = result_of(&answer, 1)?;
        quantity(result, "eth_blockNumber result")
    }

    /// Receipts (and, where `with_tx`, transactions) for transaction hashes,
    /// in the order asked, one batch request per [`LOOKUPS_PER_BATCH`].
    pub async fn lookups(&self, wanted: &[(&str, bool)]) -> Result<Vec<Lookup>, NodeError> {
        let mut out = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(LOOKUPS_PER_BATCH) {
            let mut calls = Vec::with_capacity(chunk.len() * 2);
            for (i, (hash, with_tx)) in chunk.iter().enumerate() {
                let id = 2 * i as u64;
                calls.push(call(id, "eth_getTransactionReceipt", json!([hash])));
                if *with_tx {
                    calls.push(call(id + 1, "eth_getTransactionByHash", json!([hash])));
                }
            }
            let answers = self.post(&Value::Array(calls)).await?;
            let Value::Array(answers) = answers else {
                return Err(bad("expected a JSON array answering a batch request"));
            };
            let by_id = |id: u64| -> Result<&Value, NodeError> {
                let answer = answers
                    .iter()
                    .find(|a| a.get("id").and_then(Value::as_u64) == Some(id))
                    .ok_or_else(|| bad(&format!("the batch answer has no reply with id {id}")))?;
                result_of(answer, id)
            };
            for (i, (hash, with_tx)) in chunk.iter().enumerate() {
                let id = 2 * i as u64;
                let receipt = receipt(by_id(id)?, hash)?;
                let tx = if *with_tx {
                    transfer(by_id(id + 1)?)?
                } else {
                    None
                };
                out.push(Lookup { receipt, tx });
            }
        }
        Ok(out)
    }

    async fn post(&self, body: &Value) -> Result<Value, NodeError> {
        let mut resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(NodeError::HttpStatus(resp.status().as_u16()));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if buf.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(bad("the body is larger than 32 MiB"));
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&buf).map_err(|e| bad(&format!("the body is not JSON ({e})")))
    }
}

fn call(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn bad(why: &str) -> NodeError {
    NodeError::BadResponse(why.to_string())
}

/// A reqwest error as a node error, without the URL (it may hold a key).
fn transport(e: reqwest::Error) -> NodeError {
    if e.is_timeout() {
        return NodeError::Timeout;
    }
    let connect = e.is_connect() || e.is_request();
    let e = e.without_url();
    let mut why = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = source {
        if !why.is_empty() {
            why.push_str(": ");
        }
        why.push_str(&s.to_string());
        source = s.source();
    }
    if connect {
        NodeError::Unreachable(why)
    } else {
        NodeError::BadResponse(why)
    }
}

/// The `result` of a JSON-RPC reply with id `id`, or its error.
fn result_of(answer: &Value, id: u64) -> Result<&Value, NodeError> {
    if answer.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(bad(&format!("expected a reply with id {id}")));
    }
    if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
        let message: String = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .chars()
            .take(200)
            .collect();
        return Err(NodeError::Rpc {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message,
        });
    }
    answer
        .get("result")
        .ok_or_else(|| bad("a reply with neither result nor error"))
}

/// A JSON-RPC quantity that fits a block height (`0x` + up to 15 hex digits).
fn quantity(v: &Value, what: &str) -> Result<i64, NodeError> {
    let digits = v
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .filter(|d| !d.is_empty() && d.len() <= 15)
        .ok_or_else(|| {
            bad(&format!(
                "{what}: expected a hex quantity such as \"0x1b4\""
            ))
        })?;
    i64::from_str_radix(digits, 16)
        .ok()
        .filter(|n| *n <= crate::domain::MAX_BLOCK_HEIGHT)
        .ok_or_else(|| {
            bad(&format!(
                "{what}: expected a hex quantity such as \"0x1b4\" of at most 2^53 - 1"
            ))
        })
}

/// A 256-bit hex quantity as a decimal integer string (exact).
fn wei(v: &Value) -> Result<String, NodeError> {
    let err = || bad("transaction value: expected a hex quantity of at most 256 bits");
    let digits = v
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .filter(|d| !d.is_empty() && d.len() <= 64)
        .ok_or_else(err)?;
    ruint::aliases::U256::from_str_radix(digits, 16)
        .map(|n| n.to_string())
        .map_err(|_| err())
}

fn receipt(v: &Value, hash: &str) -> Result<Option<Receipt>, NodeError> {
    if v.is_null() {
        return Ok(None);
    }
    let got = v.get("transactionHash").and_then(Value::as_str);
    if !got.is_some_and(|g| g.eq_ignore_ascii_case(hash)) {
        return Err(bad(
            "a receipt for another transaction than the one asked for",
        ));
    }
    let block = match v.get("blockNumber") {
        None | Some(Value::Null) => return Ok(None), // not mined (yet, or any more)
        Some(b) => quantity(b, "receipt blockNumber")?,
    };
    let success = match v.get("status").and_then(Value::as_str) {
        Some("0x1") => true,
        Some("0x0") => false,
        _ => {
            return Err(bad(
                "a receipt without status 0x0/0x1 (pre-Byzantium receipts are not supported)",
            ))
        }
    };
    let transfers = match v.get("logs") {
        Some(Value::Array(logs)) => logs.iter().filter_map(token_transfer).collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(bad("receipt logs: expected an array")),
    };
    Ok(Some(Receipt {
        block_number: block,
        success,
        transfers,
    }))
}

/// An ERC-20 transfer, if `log` is one: the Transfer topic with `from` and
/// `to` indexed (3 topics; ERC-721 has a 4th) and one 256-bit word of data.
/// Logs of other shapes, and logs a reorg removed, are not transfers.
fn token_transfer(log: &Value) -> Option<TokenTransfer> {
    if log.get("removed").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let topics = log.get("topics")?.as_array()?;
    let topic = |i: usize| topics.get(i).and_then(Value::as_str);
    if topics.len() != 3 || !topic(0)?.eq_ignore_ascii_case(TRANSFER_TOPIC) {
        return None;
    }
    let word = |s: &str| {
        s.strip_prefix("0x")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
    };
    let to = word(topic(2)?)?;
    if !to.starts_with(&"0".repeat(24)) {
        return None; // not an address
    }
    let data = word(log.get("data")?.as_str()?)?;
    let value = ruint::aliases::U256::from_str_radix(&data, 16).ok()?;
    let contract = log.get("address")?.as_str()?.to_ascii_lowercase();
    Some(TokenTransfer {
        contract,
        to: format!("0x{}", &to[24..]),
        value: value.to_string(),
    })
}

fn transfer(v: &Value) -> Result<Option<Transfer>, NodeError> {
    if v.is_null() {
        return Ok(None);
    }
    let to = match v.get("to") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
        Some(_) => return Err(bad("transaction to: expected an address or null")),
    };
    let value_wei = wei(v.get("value").unwrap_or(&Value::Null))?;
    Ok(Some(Transfer { to, value_wei }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_exactly() {
        assert_eq!(quantity(&json!("0x1b4"), "x"), Ok(436));
        assert!(quantity(&json!("1b4"), "x").is_err());
        assert!(quantity(&json!("0x"), "x").is_err());
        assert!(quantity(&json!(12), "x").is_err());
        assert!(quantity(&json!("0xffffffffffffffff"), "x").is_err());
        assert!(quantity(&json!("0x20000000000000"), "x").is_err());
        assert_eq!(quantity(&json!("0x1fffffffffffff"), "x"), Ok((1 << 53) - 1));
        assert_eq!(
            wei(&json!("0xde0b6b3a7640000")).unwrap(),
            "1000000000000000000"
        );
        let max = format!("0x{}", "f".repeat(64));
        assert_eq!(
            wei(&json!(max)).unwrap(),
            "115792089237316195423570985008687907853269984665640564039457584007913129639935"
        );
        assert!(wei(&json!(format!("0x1{}", "0".repeat(64)))).is_err());
    }

    #[test]
    fn replies_are_checked() {
        assert_eq!(
            result_of(&json!({"jsonrpc":"2.0","id":1,"result":"0x1"}), 1),
            Ok(&json!("0x1"))
        );
        assert!(matches!(
            result_of(&json!({"id":1,"error":{"code":-32000,"message":"boom"}}), 1),
            Err(NodeError::Rpc { code: -32000, .. })
        ));
        assert!(result_of(&json!({"id":2,"result":"0x1"}), 1).is_err());
        assert!(result_of(&json!({"id":1}), 1).is_err());
        let r = json!({"transactionHash":"0xAB","blockNumber":"0x10","status":"0x0"});
        assert_eq!(
            receipt(&r, "0xab").unwrap(),
            Some(Receipt {
                block_number: 16,
                success: false,
                transfers: vec![],
            })
        );
        assert!(receipt(&r, "0xcd").is_err());
        assert_eq!(receipt(&Value::Null, "0xab").unwrap(), None);
    }

    #[test]
    fn transfer_logs_are_read_and_others_left_out() {
        let to = "0x000000000000000000000000ffcf8fdee72ac11b5c542428b35eef5769c409f0";
        let from = "0x00000000000000000000000090f8bf6a479f320ead074411a4b0e7944ea8c9c1";
        let amount = format!("0x{:064x}", 25_500_000u64);
        let log = |extra: Value| {
            let mut l = json!({"address": "0xAbC0000000000000000000000000000000000001",
                "topics": [TRANSFER_TOPIC, from, to], "data": amount});
            if let (Value::Object(l), Value::Object(e)) = (&mut l, extra) {
                l.extend(e);
            }
            l
        };
        let r = json!({"transactionHash":"0xab","blockNumber":"0x10","status":"0x1","logs": [
            log(json!({})),
            log(json!({"removed": true})),
            log(json!({"topics": [TRANSFER_TOPIC, from, to, to]})), // ERC-721 shape
            log(json!({"topics": ["0x1234", from, to]})),
            log(json!({"data": "0x12"})),
        ]});
        let got = receipt(&r, "0xab").unwrap().unwrap();
        assert_eq!(
            got.transfers,
            [TokenTransfer {
                contract: "0xabc0000000000000000000000000000000000001".into(),
                to: "0xffcf8fdee72ac11b5c542428b35eef5769c409f0".into(),
                value: "25500000".into(),
            }]
        );
    }
}

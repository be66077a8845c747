//! A real local EVM node for the chain tests: ganache (npm, pinned in
//! tests/evm/package.json, installed by scripts/test-tools.sh), started on a
//! free loopback port with deterministic accounts and a database folder, so
//! it can be stopped and started again with its chain intact.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// Deterministic ganache accounts (unlocked, 1000 ETH each).
pub const ALICE: &str = "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1";
pub const BOB: &str = "0xffcf8fdee72ac11b5c542428b35eef5769c409f0";
pub const CAROL: &str = "0x22d491bde2303f2f43325b2108d26f1eaba1e32b";
pub const ONE_ETH: &str = "0xde0b6b3a7640000";
pub const HALF_ETH: &str = "0x6f05b59d3b20000";

pub struct Ganache {
    pub port: u16,
    db: tempfile::TempDir,
    child: Option<Child>,
    http: reqwest::Client,
}

fn cli_js() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/evm/node_modules/ganache/dist/node/cli.js");
    assert!(
        p.exists(),
        "ganache is not installed at {}: run `make test`, or `bash scripts/test-tools.sh` once",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Ganache {
    pub async fn start() -> Ganache {
        let mut g = Ganache {
            port: free_port(),
            db: tempfile::tempdir().unwrap(),
            child: None,
            http: reqwest::Client::new(),
        };
        g.restart().await;
        g
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Starts the node (again, on the same port and chain database) and
    /// waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new("node")
            .arg(cli_js())
            .args(["--server.host", "127.0.0.1", "--server.port"])
            .arg(self.port.to_string())
            .args([
                "--wallet.deterministic",
                "--logging.quiet",
                "--database.dbPath",
            ])
            .arg(self.db.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        self.child = Some(child);
        for _ in 0..300 {
            if self.try_rpc("eth_blockNumber", json!([])).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("ganache did not answer on port {} within 30 s", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
        let resp = self
            .http
            .post(self.url())
            .timeout(Duration::from_secs(30))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match v.get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(v["result"].clone()),
        }
    }

    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    pub async fn head(&self) -> i64 {
        let h = self.rpc("eth_blockNumber", json!([])).await;
        i64::from_str_radix(h.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    pub async fn mine(&self, blocks: u32) {
        self.rpc("evm_mine", json!([{"blocks": blocks}])).await;
    }

    /// Sends value (hex wei) and returns the hash; each transaction is
    /// mined at once into its own block.
    pub async fn send(&self, from: &str, to: &str, value: &str) -> String {
        let tx = json!([{"from": from, "to": to, "value": value, "gas": "0x30000"}]);
        let h = self.rpc("eth_sendTransaction", tx).await;
        h.as_str().unwrap().to_string()
    }

    /// The block a transaction is in.
    pub async fn block_of(&self, hash: &str) -> i64 {
        let r = self.rpc("eth_getTransactionReceipt", json!([hash])).await;
        i64::from_str_radix(
            r["blockNumber"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap()
    }

    pub async fn snapshot(&self) -> String {
        self.rpc("evm_snapshot", json!([]))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn revert(&self, id: &str) {
        assert_eq!(self.rpc("evm_revert", json!([id])).await, json!(true));
    }

    /// Deploys a contract whose every call reverts; returns its address.
    pub async fn deploy_reverter(&self) -> String {
        // init: copy the 5-byte runtime `PUSH1 0 PUSH1 0 REVERT` and return it
        let code = "0x600580600b6000396000f360006000fd";
        let tx = json!([{"from": ALICE, "data": code, "gas": "0x30000"}]);
        let hash = self.rpc("eth_sendTransaction", tx).await;
        let r = self.rpc("eth_getTransactionReceipt", json!([hash])).await;
        r["contractAddress"].as_str().unwrap().to_string()
    }
}

/// The test contracts compiled by the pinned solc (tests/evm/compile.js),
/// once per test binary.
fn contracts() -> &'static Value {
    static COMPILED: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    COMPILED.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/evm/compile.js");
        let out = Command::new("node").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "compiling the test contracts failed (run `bash scripts/test-tools.sh`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
}

/// A 32-byte ABI word of an address or a number.
fn word(v: &str) -> String {
    format!("{:0>64}", v.trim_start_matches("0x").to_ascii_lowercase())
}

impl Ganache {
    /// Deploys the test ERC-20 with `decimals`; ALICE holds 10^30 base
    /// units. Returns its address.
    pub async fn deploy_token(&self, decimals: u8) -> String {
        let code = contracts()["TestToken"]["bytecode"].as_str().unwrap();
        let data = format!("{code}{}", word(&format!("{decimals:x}")));
        let tx = json!([{"from": ALICE, "data": data, "gas": "0x300000"}]);
        let hash = self.rpc("eth_sendTransaction", tx).await;
        let r = self.rpc("eth_getTransactionReceipt", json!([hash])).await;
        assert_eq!(r["status"], "0x1", "token deployment failed: {r}");
        r["contractAddress"].as_str().unwrap().to_string()
    }

    /// Calls `method` of the test token from `from` with ABI words `args`;
    /// returns the transaction hash (mined at once, even if it reverts).
    pub async fn call_token(
        &self,
        token: &str,
        from: &str,
        method: &str,
        args: &[String],
    ) -> String {
        let selector = contracts()["TestToken"]["methods"][method]
            .as_str()
            .unwrap_or_else(|| panic!("no method {method}"));
        let data = format!("0x{selector}{}", args.concat());
        let tx = json!([{"from": from, "to": token, "data": data, "gas": "0x100000"}]);
        self.rpc("eth_sendTransaction", tx)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `transfer(to, amount)` of the test token, amount in base units.
    pub async fn token_transfer(&self, token: &str, from: &str, to: &str, amount: u128) -> String {
        let args = [word(to), word(&format!("{amount:x}"))];
        self.call_token(token, from, "transfer(address,uint256)", &args)
            .await
    }

    /// Two transfers to `to` in one transaction.
    pub async fn token_transfer_twice(&self, token: &str, to: &str, a: u128, b: u128) -> String {
        let args = [word(to), word(&format!("{a:x}")), word(&format!("{b:x}"))];
        self.call_token(
            token,
            ALICE,
            "transferTwice(address,uint256,uint256)",
            &args,
        )
        .await
    }
}

impl Drop for Ganache {
    fn drop(&mut self) {
        self.stop();
    }
}

//! One `Config`, layered defaults → `config.toml` → `PAYHOOK__SECTION__KEY`
//! environment variables, validated once at load. A bad key or value stops
//! start-up with a message that names the key and the accepted form.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AppError;
use crate::ids::Secret;
use crate::sealing::KeyRing;

/// How to make the key payhook needs to open stored secrets.
pub const MISSING_KEY: &str =
    "secrets.key: required (base64 of 32 random bytes that seals signing \
     secrets at rest); `payhook init` writes one, or set PAYHOOK__SECRETS__KEY to the output of \
     `head -c 32 /dev/urandom | base64`";
use crate::urls::redact_url;

/// A duration written as a humantime string (`"10s"`, `"5m"`, `"6h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration string such as \"10s\", \"5m\" or \"6h\"")
        })?;
        parse_duration(&raw)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"10s"`, `"5m"`, `"1h 30m"`; the error names the accepted form.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim()).map_err(|_| {
        format!("expected a duration such as \"500ms\", \"10s\", \"5m\" or \"6h\", got {raw:?}")
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub scanner: ScannerConfig,
    #[serde(default)]
    pub chains: BTreeMap<String, ChainConfig>,
    pub delivery: DeliveryConfig,
    pub retry: RetryConfig,
    pub circuit: CircuitConfig,
    pub admin: AdminConfig,
    #[serde(default)]
    pub secrets: SecretsConfig,
    pub retention: RetentionConfig,
    #[serde(default)]
    pub operator: OperatorConfig,
    pub log: LogConfig,
}

/// Where payhook sends its own operational events (SPEC §9), and the
/// secret that signs them (Standard Webhooks).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// A URL may carry a token: never shown in full.
    #[serde(default, skip_serializing)]
    pub webhook_url: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub secret: Option<Secret>,
}

impl OperatorConfig {
    /// Both or neither; the secret in the form payhook issues.
    fn validate(&self) -> Result<(), AppError> {
        match (&self.webhook_url, &self.secret) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(AppError::config(
                "operator.secret: required with operator.webhook_url \
                 (whsec_ followed by base64, e.g. from `payhook init`)",
            )),
            (None, Some(_)) => Err(AppError::config(
                "operator.webhook_url: required with operator.secret (an https:// URL)",
            )),
            (Some(url), Some(secret)) => {
                if url::Url::parse(url.expose()).is_err() {
                    return Err(bad(
                        "operator.webhook_url",
                        "an absolute URL such as https://ops.example.com/payhook",
                        &redact_url(url.expose()),
                    ));
                }
                crate::delivery::signer::standard_key(secret.expose())
                    .map(|_| ())
                    .map_err(|_| {
                        AppError::config(
                            "operator.secret: expected whsec_ followed by base64 \
                             (as `payhook init` writes)",
                        )
                    })
            }
        }
    }
}

/// How long finished deliveries (with their attempts) and dead letters are
/// kept; an event goes when nothing refers to it any more.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub succeeded: HumanDuration,
    pub dead: HumanDuration,
}

/// The keys that seal signing secrets and header values at rest
/// (`sealing`): base64 of 32 random bytes each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    #[serde(default, skip_serializing)]
    pub key: Option<Secret>,
    /// Older keys, still accepted for opening rows sealed before a rotation.
    #[serde(default, skip_serializing)]
    pub previous_keys: Vec<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    pub interval: HumanDuration,
    pub batch_size: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub confirmations: u32,
    /// A node URL often carries an API key (path, query or userinfo).
    #[serde(default, skip_serializing)]
    pub rpc_url: Option<Secret>,
    /// ERC-20 tokens checked on chain, by symbol (upper case: symbols
    /// match case-insensitively; see [`ChainConfig::token`]).
    #[serde(default, deserialize_with = "tokens_by_symbol")]
    pub tokens: BTreeMap<String, TokenConfig>,
}

/// A token's settings as one source gives them (a file may give both, an
/// environment variable one).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialToken {
    contract: Option<String>,
    decimals: Option<u32>,
}

/// Tokens keyed by upper-case symbol. Environment variables reach the
/// config lower-cased (`…__TOKENS__USDT__CONTRACT` is `tokens.usdt`), so
/// entries that differ only in case are one token, merged field by field
/// (the lower-case one, from the environment, wins).
fn tokens_by_symbol<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, TokenConfig>, D::Error> {
    let raw = BTreeMap::<String, PartialToken>::deserialize(d)?;
    let mut merged: BTreeMap<String, (Option<String>, Option<u32>)> = BTreeMap::new();
    for (symbol, t) in raw {
        let entry = merged.entry(symbol.to_ascii_uppercase()).or_default();
        entry.0 = t.contract.or(entry.0.take());
        entry.1 = t.decimals.or(entry.1);
    }
    merged
        .into_iter()
        .map(
            |(symbol, (contract, decimals))| match (contract, decimals) {
                (Some(contract), Some(decimals)) => {
                    Ok((symbol, TokenConfig { contract, decimals }))
                }
                (None, _) => Err(serde::de::Error::custom(format!(
                    "tokens.{symbol}.contract: missing required value"
                ))),
                (_, None) => Err(serde::de::Error::custom(format!(
                    "tokens.{symbol}.decimals: missing required value"
                ))),
            },
        )
        .collect()
}

/// An ERC-20 token on a chain with a node: its contract and decimals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub contract: String,
    pub decimals: u32,
}

impl ChainConfig {
    /// The configured token of this symbol, whatever its case.
    pub fn token(&self, symbol: &str) -> Option<&TokenConfig> {
        self.tokens
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(symbol))
            .map(|(_, t)| t)
    }

    /// The configured symbols, upper case (for messages).
    pub fn token_symbols(&self) -> Vec<String> {
        self.tokens.keys().map(|s| s.to_ascii_uppercase()).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub concurrency: u32,
    pub timeout: HumanDuration,
    pub connect_timeout: HumanDuration,
    pub max_response_bytes: u32,
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    pub max_in_flight_per_endpoint: u32,
    pub allow_http: bool,
    pub allow_private_targets: bool,
    /// `http://host:port` of a CONNECT proxy for all egress to merchants.
    #[serde(default)]
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub base: HumanDuration,
    pub cap: HumanDuration,
    pub jitter: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    pub failure_threshold: u32,
    pub cooldown: HumanDuration,
    pub disable_after: HumanDuration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: String,
    #[serde(default, skip_serializing)]
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

fn secs(s: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(s))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: DatabaseConfig {
                url: "sqlite://payhook.db?mode=rwc".into(),
                max_connections: 8,
            },
            scanner: ScannerConfig {
                interval: secs(5),
                batch_size: 500,
            },
            chains: BTreeMap::new(),
            delivery: DeliveryConfig {
                concurrency: 64,
                timeout: secs(10),
                connect_timeout: secs(3),
                max_response_bytes: 4096,
                rate_limit_per_sec: 20,
                rate_limit_burst: 10,
                max_in_flight_per_endpoint: 8,
                allow_http: false,
                allow_private_targets: false,
                proxy: None,
            },
            retry: RetryConfig {
                max_attempts: 20,
                base: secs(5),
                cap: secs(6 * 3600),
                jitter: 0.2,
            },
            circuit: CircuitConfig {
                failure_threshold: 10,
                cooldown: secs(60),
                disable_after: secs(5 * 86400),
            },
            admin: AdminConfig {
                listen: "127.0.0.1:8080".into(),
                token: None,
            },
            secrets: SecretsConfig::default(),
            operator: OperatorConfig::default(),
            retention: RetentionConfig {
                succeeded: secs(30 * 86400),
                dead: secs(90 * 86400),
            },
            log: LogConfig {
                format: LogFormat::Pretty,
            },
        }
    }
}

impl Config {
    /// Loads defaults, then `path` (if it exists, or fails when `required`),
    /// then `PAYHOOK__…` variables, and validates the result.
    pub fn load(path: &Path, required: bool) -> Result<Config, AppError> {
        if required && !path.exists() {
            return Err(AppError::config(format!(
                "config file {} not found (run `payhook init` to write one, or pass --config FILE)",
                path.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(Env::prefixed("PAYHOOK__").split("__").lowercase(true));
        let cfg: Config = figment.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(describe_figment_error).collect();
            AppError::config(msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values serde alone cannot: URL forms, ranges, chain names.
    pub fn validate(&self) -> Result<(), AppError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(bad(
                "database.url",
                "sqlite://… or postgres://…",
                &redact_url(url),
            ));
        }
        positive(
            "database.max_connections",
            self.database.max_connections as u64,
        )?;
        positive("scanner.batch_size", self.scanner.batch_size as u64)?;
        nonzero_duration("scanner.interval", self.scanner.interval)?;
        for (name, chain) in &self.chains {
            chain.validate(name)?;
        }
        self.delivery.validate()?;
        self.retry.validate()?;
        positive(
            "circuit.failure_threshold",
            self.circuit.failure_threshold as u64,
        )?;
        nonzero_duration("retention.succeeded", self.retention.succeeded)?;
        nonzero_duration("retention.dead", self.retention.dead)?;
        self.admin.validate()?;
        self.operator.validate()?;
        self.key_ring().map(|_| ())
    }

    /// `admin.token` is required by the processes that serve the admin API.
    pub fn require_admin_token(&self) -> Result<&str, AppError> {
        self.admin
            .token
            .as_ref()
            .map(Secret::expose)
            .ok_or_else(|| {
                AppError::config(
                "admin.token: required (at least 32 random characters; `payhook init` writes one)"
                    .to_string(),
            )
            })
    }

    /// The key ring of `secrets.key` and `secrets.previous_keys`, if a key
    /// is configured (a bad key is an error either way).
    pub fn key_ring(&self) -> Result<Option<KeyRing>, AppError> {
        match &self.secrets.key {
            Some(k) => KeyRing::new(k, &self.secrets.previous_keys).map(Some),
            None if !self.secrets.previous_keys.is_empty() => Err(AppError::config(
                "secrets.previous_keys: given without secrets.key".to_string(),
            )),
            None => Ok(None),
        }
    }

    /// `secrets.key` is required by the long-running processes.
    pub fn require_secrets_key(&self) -> Result<(), AppError> {
        match &self.secrets.key {
            Some(_) => Ok(()),
            None => Err(AppError::config(MISSING_KEY.to_string())),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database.url.starts_with("postgres")
    }
}

impl ChainConfig {
    fn validate(&self, name: &str) -> Result<(), AppError> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if name.is_empty() || !name.chars().all(valid_char) {
            return Err(bad(
                &format!("chains.{name}"),
                "a lowercase chain name of a-z, 0-9, - and _",
                name,
            ));
        }
        positive(
            &format!("chains.{name}.confirmations"),
            self.confirmations as u64,
        )?;
        for (symbol, token) in &self.tokens {
            token.validate(&format!("chains.{name}.tokens.{symbol}"))?;
        }
        let Some(rpc) = &self.rpc_url else {
            if !self.tokens.is_empty() {
                return Err(AppError::config(format!(
                    "chains.{name}.tokens: tokens are checked on chain, so they need \
                     chains.{name}.rpc_url (a chain without a node takes any token as reported)"
                )));
            }
            return Ok(());
        };
        match url::Url::parse(rpc.expose()) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
            _ => Err(bad(
                &format!("chains.{name}.rpc_url"),
                "an http:// or https:// URL",
                &redact_url(rpc.expose()),
            )),
        }
    }
}

impl TokenConfig {
    fn validate(&self, key: &str) -> Result<(), AppError> {
        let hex = self.contract.strip_prefix("0x").unwrap_or("");
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(
                &format!("{key}.contract"),
                "0x and 40 hex digits (the token's contract address)",
                &self.contract,
            ));
        }
        if self.decimals > 36 {
            return Err(bad(
                &format!("{key}.decimals"),
                "a whole number from 0 to 36",
                &self.decimals.to_string(),
            ));
        }
        Ok(())
    }
}

impl DeliveryConfig {
    fn validate(&self) -> Result<(), AppError> {
        let d = self;
        positive("delivery.concurrency", d.concurrency as u64)?;
        nonzero_duration("delivery.timeout", d.timeout)?;
        nonzero_duration("delivery.connect_timeout", d.connect_timeout)?;
        positive("delivery.rate_limit_per_sec", d.rate_limit_per_sec as u64)?;
        positive("delivery.rate_limit_burst", d.rate_limit_burst as u64)?;
        positive(
            "delivery.max_in_flight_per_endpoint",
            d.max_in_flight_per_endpoint as u64,
        )?;
        if let Some(p) = &d.proxy {
            let ok = url::Url::parse(p).is_ok_and(|u| {
                u.scheme() == "http"
                    && u.host_str().is_some_and(|h| !h.is_empty())
                    && u.port().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.path().len() <= 1
                    && u.query().is_none()
            });
            if !ok {
                return Err(bad(
                    "delivery.proxy",
                    "http://HOST:PORT of a CONNECT proxy (no credentials or path)",
                    &redact_url(p),
                ));
            }
        }
        Ok(())
    }
}

impl RetryConfig {
    fn validate(&self) -> Result<(), AppError> {
        let r = self;
        positive("retry.max_attempts", r.max_attempts as u64)?;
        nonzero_duration("retry.base", r.base)?;
        nonzero_duration("retry.cap", r.cap)?;
        if r.cap.0 < r.base.0 {
            return Err(AppError::config(format!(
                "retry.cap: expected a duration at least retry.base ({}), got {}",
                humantime::format_duration(r.base.0),
                humantime::format_duration(r.cap.0)
            )));
        }
        if !(0.0..1.0).contains(&r.jitter) || !r.jitter.is_finite() {
            return Err(bad(
                "retry.jitter",
                "a number from 0.0 up to (not including) 1.0",
                &r.jitter.to_string(),
            ));
        }
        Ok(())
    }
}

impl AdminConfig {
    fn validate(&self) -> Result<(), AppError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "admin.listen",
                "an address and port such as \"127.0.0.1:8080\"",
                &self.listen,
            ));
        }
        if let Some(t) = &self.token {
            token_strength(t.expose())?;
        }
        Ok(())
    }
}

/// `admin.token` must be a real secret: at least 32 characters, drawn from
/// at least 16 different ones (a generated token has about 30; a repeated
/// or counted string does not pass). Never echoes the token.
fn token_strength(token: &str) -> Result<(), AppError> {
    let distinct = token
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if token.chars().count() < 32 || distinct < 16 {
        return Err(AppError::config(
            "admin.token: expected at least 32 random characters (at least 16 different ones); \
             run `payhook init` to generate one"
                .to_string(),
        ));
    }
    Ok(())
}

fn bad(key: &str, accepted: &str, got: &str) -> AppError {
    AppError::config(format!("{key}: expected {accepted}, got {got:?}"))
}

fn positive(key: &str, v: u64) -> Result<(), AppError> {
    if v == 0 {
        return Err(bad(key, "a whole number greater than 0", "0"));
    }
    Ok(())
}

fn nonzero_duration(key: &str, d: HumanDuration) -> Result<(), AppError> {
    if d.0.is_zero() {
        return Err(bad(
            key,
            "a duration greater than zero such as \"10s\"",
            "0s",
        ));
    }
    Ok(())
}

/// Figment says "for key default.delivery.timeout"; we say `delivery.timeout: …`.
fn describe_figment_error(e: figment::Error) -> String {
    let key = e.path.join(".");
    let kind = match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // Figment's path sometimes already ends with the unknown field.
            let full = if key.is_empty() {
                field.clone()
            } else if key == *field || key.ends_with(&format!(".{field}")) {
                key.clone()
            } else {
                format!("{key}.{field}")
            };
            return format!(
                "{full}: unknown key (accepted here: {})",
                expected
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        figment::error::Kind::MissingField(field) => {
            let full = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
            return format!("{full}: missing required value");
        }
        other => other
            .to_string()
            .replace("expected u32", "expected a whole number")
            .replace("expected u64", "expected a whole number")
            .replace("expected f64", "expected a number such as 0.2")
            .replace("expected a boolean", "expected true or false"),
    };
    let source = e
        .metadata
        .as_ref()
        .map(
            |m| match &e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(src) => format!(" (from {src})"),
                None => format!(" (from {})", m.name),
            },
        )
        .unwrap_or_default();
    if key.is_empty() {
        format!("{kind}{source}")
    } else {
        format!("{key}: {kind}{source}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let mut cfg = Config::default();
        cfg.admin.token = Some(Secret::new("tok-0123456789abcdefGHIJKLMNOPQRSTUV"));
        assert!(!format!("{cfg:?}").contains("tok-0123456789abcdef"));
        for weak in [
            "a".repeat(40),
            "0123456789".repeat(4),
            "short-but-random-Zq8".into(),
        ] {
            cfg.admin.token = Some(Secret::new(weak.clone()));
            let e = cfg.validate().unwrap_err();
            assert!(e.message.starts_with("admin.token:") && !e.message.contains(&weak));
        }
        cfg.admin.token = Some(Secret::new(crate::ids::new_admin_token()));
        cfg.validate().unwrap();
        cfg.database.url = "mysql://user:hunter2@db/x".into();
        let e = cfg.validate().unwrap_err();
        assert!(
            e.message.contains("database.url") && !e.message.contains("hunter2"),
            "{}",
            e.message
        );
        // A node URL's key: not in Debug, not in the error for a bad scheme.
        let mut cfg = Config::default();
        cfg.chains.insert(
            "eth".into(),
            ChainConfig {
                confirmations: 12,
                rpc_url: Some(Secret::new("wss://mainnet.example/ws/v3/SECRETKEY1")),
                tokens: Default::default(),
            },
        );
        assert!(!format!("{cfg:?}").contains("SECRETKEY1"));
        let e = cfg.validate().unwrap_err();
        assert!(
            e.message.contains("chains.eth.rpc_url") && !e.message.contains("SECRETKEY1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn token_symbols_match_whatever_their_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[chains.ethereum]\nconfirmations = 12\nrpc_url = \"http://127.0.0.1:8545\"\n\
             [chains.ethereum.tokens.USDT]\ncontract = \"0x00000000000000000000000000000000000000aa\"\n\
             decimals = 6\n",
        )
        .unwrap();
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&path))
            // What `PAYHOOK__CHAINS__ETHEREUM__TOKENS__USDT__CONTRACT` becomes.
            .merge(Serialized::default(
                "chains.ethereum.tokens.usdt.contract",
                "0x00000000000000000000000000000000000000bb",
            ));
        let cfg: Config = figment.extract().unwrap();
        let chain = &cfg.chains["ethereum"];
        let t = chain.token("Usdt").unwrap();
        assert_eq!(
            (t.contract.as_str(), t.decimals),
            ("0x00000000000000000000000000000000000000bb", 6)
        );
        assert_eq!(chain.token_symbols(), ["USDT"]);
        cfg.validate().unwrap();
        let mut bad = cfg.clone();
        bad.chains
            .get_mut("ethereum")
            .unwrap()
            .tokens
            .get_mut("USDT")
            .unwrap()
            .decimals = 37;
        assert!(bad.validate().unwrap_err().message.contains("decimals"));
    }

    #[test]
    fn duration_error_names_accepted_form() {
        let e = parse_duration("ten seconds").unwrap_err();
        assert!(e.contains("\"10s\""), "{e}");
    }
}

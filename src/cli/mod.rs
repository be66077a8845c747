//! The shell surface: `payhook <command>`. One file per command group; each
//! calls the same `ops`/`store` functions the admin API uses. Exit codes: 0
//! ok, 2 bad input (including unknown ids and bad config), 1 other failure.

mod api_key;
mod audit;
mod deliveries;
mod dlq;
mod endpoint;
mod event;
mod init;
mod merchant;
mod output;
mod payment;
mod secrets;
mod serve;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "payhook",
    version,
    about = "Signed, retried, dead-lettered payment webhooks for a crypto gateway"
)]
pub struct Cli {
    /// Config file (missing file = defaults + PAYHOOK__ environment).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "./config.toml"
    )]
    pub config: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a config file with a random admin token.
    Init(init::InitArgs),
    /// Run scanner + sender (+ admin API) in one process.
    Serve,
    /// Run only the delivery workers.
    Worker,
    /// Run only the scanner loop.
    Scanner,
    /// Create or upgrade the database schema.
    Migrate,
    /// Manage merchants.
    #[command(subcommand)]
    Merchant(merchant::MerchantCmd),
    /// Manage a merchant's webhook endpoints.
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCmd),
    /// Register and inspect payments.
    #[command(subcommand)]
    Payment(payment::PaymentCmd),
    /// Chain heads (for chains without an rpc_url).
    #[command(subcommand)]
    Chain(payment::ChainCmd),
    /// Scan now: confirm and expire what is due; prints the counts.
    Scan,
    /// Inspect and replay events.
    #[command(subcommand)]
    Event(event::EventCmd),
    /// Inspect deliveries and their attempts.
    #[command(subcommand)]
    Deliveries(deliveries::DeliveriesCmd),
    /// The dead-letter queue.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// The key that seals secrets at rest.
    #[command(subcommand)]
    Secrets(secrets::SecretsCmd),
    /// Who changed what.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Merchant API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(api_key::ApiKeyCmd),
    /// Check a webhook signature (for merchants).
    Verify(verify::VerifyArgs),
    /// Run the end-to-end demo with a built-in receiver.
    Demo,
}

/// Parses arguments, runs the command, returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            if json {
                let body = serde_json::json!({"error": {"code": e.code(), "message": e.message}});
                eprintln!("{body}");
            } else {
                eprintln!("error: {e}");
            }
            e.exit_code()
        }
    };
    // Never wait long on a worker thread that did not stop in time.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

async fn run(cli: Cli) -> AppResult<()> {
    let json = cli.json;
    let long_running = matches!(
        cli.command,
        Command::Serve | Command::Worker | Command::Scanner
    );
    let path = cli.config.clone();
    let load = move || load(&path, long_running);
    match cli.command {
        Command::Init(args) => init::run(&cli.config, args, json),
        Command::Verify(args) => verify::run(args, json),
        Command::Demo => {
            let cfg = load()?;
            crate::demo::run(cfg).await
        }
        Command::Serve => serve::run(load()?, serve::Role::Serve).await,
        Command::Worker => serve::run(load()?, serve::Role::Worker).await,
        Command::Scanner => serve::run(load()?, serve::Role::Scanner).await,
        Command::Migrate => {
            let store = Store::open(&load()?).await?;
            output::done(json, "migrations applied");
            store.close().await;
            Ok(())
        }
        command => {
            let cfg = load()?;
            let store = Store::open(&cfg).await?;
            let res = match command {
                Command::Merchant(c) => merchant::run(&store, &cfg, c, json).await,
                Command::Endpoint(c) => endpoint::run(&store, &cfg, c, json).await,
                Command::Payment(c) => payment::run(&store, &cfg, c, json).await,
                Command::Chain(c) => payment::run_chain(&store, &cfg, c, json).await,
                Command::Scan => {
                    let report = crate::ops::payments::scan(&store, &cfg).await?;
                    output::scan_report(json, &report);
                    Ok(())
                }
                Command::Deliveries(c) => deliveries::run(&store, c, json).await,
                Command::Event(c) => event::run(&store, c, json).await,
                Command::Dlq(c) => dlq::run(&store, c, json).await,
                Command::Secrets(c) => secrets::run(&store, c, json).await,
                Command::Audit(c) => audit::run(&store, c, json).await,
                Command::ApiKey(c) => api_key::run(&store, c, json).await,
                _ => unreachable!("handled above"),
            };
            store.close().await;
            res
        }
    }
}

fn load(path: &std::path::Path, long_running: bool) -> AppResult<Config> {
    // An explicitly named file must exist; the default one may be absent.
    let explicit = path != std::path::Path::new("./config.toml");
    let cfg = Config::load(path, explicit)?;
    crate::logging::init(cfg.log.format, if long_running { "info" } else { "warn" });
    Ok(cfg)
}

/// Parses an RFC 3339 time flag to unix ms (clap names the flag in errors).
pub(crate) fn rfc3339_arg(raw: &str) -> Result<i64, String> {
    crate::time::parse_rfc3339("time", raw).map_err(|e| e.message)
}

/// Parses a duration flag, naming the flag in the error.
pub(crate) fn duration_arg(flag: &str, raw: &str) -> AppResult<std::time::Duration> {
    crate::config::parse_duration(raw).map_err(|e| AppError::bad_input(format!("{flag}: {e}")))
}

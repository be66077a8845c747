//! `payhook init`: writes a config file with a fresh admin token and
//! secrets key.

use std::path::Path;

use clap::Args;

use crate::error::{AppError, AppResult};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// Database URL to write (default: the embedded SQLite file).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

pub fn run(path: &Path, args: InitArgs, json: bool) -> AppResult<()> {
    if path.exists() && !args.force {
        return Err(AppError::bad_input(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    let token = crate::ids::new_admin_token();
    let url = args
        .database_url
        .unwrap_or_else(|| "sqlite://payhook.db?mode=rwc".into());
    let key = crate::sealing::KeyRing::generate_key();
    let text = template(&url, &token, &key);
    write_private(path, &text)
        .map_err(|e| AppError::internal(format!("cannot write {}: {e}", path.display())))?;
    super::output::done(
        json,
        &format!(
            "wrote {} (admin.token and secrets.key generated)",
            path.display()
        ),
    );
    Ok(())
}

fn template(url: &str, token: &str, key: &str) -> String {
    format!(
        r#"# payhook configuration (written by `payhook init`).
# Every key can be overridden by PAYHOOK__SECTION__KEY, e.g. PAYHOOK__DATABASE__URL.

[database]
url = "{url}"
max_connections = 8

[scanner]
interval = "5s"
batch_size = 500

[chains.ethereum]
confirmations = 12
[chains.bsc]
confirmations = 15
[chains.tron]
confirmations = 20
[chains.polygon]
confirmations = 64

[delivery]
concurrency = 64
timeout = "10s"
connect_timeout = "3s"
max_response_bytes = 4096
rate_limit_per_sec = 20
rate_limit_burst = 10
max_in_flight_per_endpoint = 8
allow_http = false
allow_private_targets = false

[retry]
max_attempts = 20
base = "5s"
cap = "6h"
jitter = 0.2

[circuit]
failure_threshold = 10
cooldown = "60s"
disable_after = "5d"

[admin]
listen = "127.0.0.1:8080"
token = "{token}"

# Seals signing secrets and header values at rest. Keep it with the admin
# token; to rotate, move it to previous_keys, set a new one and run
# `payhook secrets rotate-key`.
[secrets]
key = "{key}"
previous_keys = []

[log]
format = "pretty"
"#
    )
}

/// Writes a file that holds a secret: created owner-only (0600), never
/// readable by others even for an instant; an existing file is replaced
/// by a new one with those permissions.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    open.open(path)?.write_all(text.as_bytes())
}

//! Log setup: `log.format` pretty or json on stderr, `RUST_LOG` to filter.
//! Nothing logged anywhere carries a secret: types holding secrets redact
//! them in `Debug`, and the sender logs ids, status codes and error kinds.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `default_level` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default_level},apalis=warn,apalis_core=warn,apalis_sqlite=warn,sqlx=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

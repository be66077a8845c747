//! `payhook verify`: checks a received webhook's signature with the same code
//! that signs it, so a merchant can debug their receiver from a shell.

use std::io::Read;

use clap::Args;

use crate::delivery::signer::{self, HexFormat, VerifyError};
use crate::domain::SignatureScheme;
use crate::error::{AppError, AppResult};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The merchant secret (whsec_… for scheme standard).
    #[arg(long, env = "PAYHOOK_VERIFY_SECRET", hide_env_values = true)]
    secret: String,
    /// standard (default) or hex.
    #[arg(
        long = "signature-scheme",
        alias = "scheme",
        default_value = "standard"
    )]
    scheme: SignatureScheme,
    /// Received header "Name: value" (repeatable): webhook-id,
    /// webhook-timestamp, webhook-signature, or the hex scheme's header.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The webhook-id (instead of --header).
    #[arg(long)]
    id: Option<String>,
    /// The webhook-timestamp (instead of --header).
    #[arg(long)]
    timestamp: Option<String>,
    /// The signature header value (instead of --header).
    #[arg(long)]
    signature: Option<String>,
    /// Header carrying the hex signature [default: x-payhook-signature].
    #[arg(long = "signature-header")]
    signature_header: Option<String>,
    /// Prefix of the hex signature [default: sha256=].
    #[arg(long = "signature-prefix")]
    signature_prefix: Option<String>,
    /// The raw body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// File holding the raw body ("-" for standard input).
    #[arg(long = "body-file")]
    body_file: Option<String>,
    /// Largest accepted clock difference for webhook-timestamp.
    #[arg(long, default_value = "5m")]
    tolerance: String,
    /// Skip the timestamp check (e.g. for a captured old request).
    #[arg(long)]
    ignore_timestamp: bool,
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn run(a: VerifyArgs, json: bool) -> AppResult<()> {
    let pairs = received_headers(&a)?;
    let body = read_body(&a)?;
    let result = check(&a, &pairs, &body)?;
    match result {
        Ok(()) if a.scheme == SignatureScheme::Hex => {
            // The hex scheme signs the body only: a replayed request (same
            // body, any time later) verifies too.
            super::output::done(
                json,
                "signature valid (scheme hex cannot detect replays: deduplicate on the body's id)",
            );
            Ok(())
        }
        Ok(()) => {
            super::output::done(json, "signature valid");
            Ok(())
        }
        Err(VerifyError::Missing(h)) => Err(AppError::bad_input(format!("missing header {h}"))),
        Err(VerifyError::BadTimestamp) => {
            Err(AppError::bad_input(VerifyError::BadTimestamp.to_string()))
        }
        Err(e) => Err(AppError::new(
            crate::error::ErrorKind::Internal,
            format!("signature invalid: {e}"),
        )),
    }
}

/// The `--header "Name: value"` pairs.
fn received_headers(a: &VerifyArgs) -> AppResult<Vec<(String, String)>> {
    a.headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    AppError::bad_input(format!("--header: expected \"Name: value\", got {h:?}"))
                })
        })
        .collect()
}

/// The raw body: `--body`, or `--body-file` (`-` for standard input).
fn read_body(a: &VerifyArgs) -> AppResult<Vec<u8>> {
    Ok(match (&a.body, a.body_file.as_deref()) {
        (Some(b), _) => b.as_bytes().to_vec(),
        (None, Some("-")) => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| {
                AppError::bad_input(format!("--body-file -: cannot read standard input: {e}"))
            })?;
            buf
        }
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| AppError::bad_input(format!("--body-file: cannot read {path}: {e}")))?,
        (None, None) => {
            return Err(AppError::bad_input(
                "give the raw body with --body or --body-file",
            ))
        }
    })
}

/// The signature check of the scheme given; an `Err` is bad input.
fn check(
    a: &VerifyArgs,
    pairs: &[(String, String)],
    body: &[u8],
) -> AppResult<Result<(), VerifyError>> {
    Ok(match a.scheme {
        SignatureScheme::Standard => {
            let id = a.id.as_deref().or(header(pairs, "webhook-id"));
            let ts = a
                .timestamp
                .as_deref()
                .or(header(pairs, "webhook-timestamp"));
            let sig = a
                .signature
                .as_deref()
                .or(header(pairs, "webhook-signature"));
            let (Some(id), Some(ts), Some(sig)) = (id, ts, sig) else {
                return Err(AppError::bad_input(
                    "scheme standard needs webhook-id, webhook-timestamp and webhook-signature \
                     (as --header \"Name: value\" or --id/--timestamp/--signature)",
                ));
            };
            let tolerance = if a.ignore_timestamp {
                None
            } else {
                Some(super::duration_arg("--tolerance", &a.tolerance)?.as_secs() as i64)
            };
            signer::verify_standard(
                &a.secret,
                id,
                ts,
                sig,
                body,
                tolerance,
                chrono::Utc::now().timestamp(),
            )
        }
        SignatureScheme::Hex => {
            let HexFormat {
                header: name,
                prefix,
            } = HexFormat::new(a.signature_header.as_deref(), a.signature_prefix.as_deref());
            let Some(sig) = a.signature.as_deref().or(header(pairs, name)) else {
                return Err(AppError::bad_input(format!(
                    "scheme hex needs the {name} header (--header \"{name}: …\" or --signature)"
                )));
            };
            signer::verify_hex(&a.secret, prefix, sig, body)
        }
    })
}

//! URL helpers every layer shares: the endpoint key (the unit of rate
//! limits, circuits and health) and what of a URL may be shown in logs,
//! metrics labels, `Debug` output and error messages. Database URLs carry
//! passwords, node URLs API keys in their path or query, merchants' URLs
//! tokens in theirs.

/// The rate-limit and circuit key of a URL: scheme + host + port + path.
pub fn endpoint_key(url: &url::Url) -> String {
    format!(
        "{}://{}:{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0),
        url.path()
    )
}

/// `scheme://host:port` of an endpoint key: what logs and metric labels
/// name an endpoint by (its path may carry a token).
pub fn key_origin(endpoint_key: &str) -> &str {
    let start = endpoint_key.find("://").map_or(0, |i| i + 3);
    match endpoint_key[start..].find('/') {
        Some(i) => &endpoint_key[..start + i],
        None => endpoint_key,
    }
}

/// The endpoint key of a URL as stored; an unparsable URL is its own key
/// (the sender refuses it).
pub fn endpoint_key_of(raw: &str) -> String {
    url::Url::parse(raw)
        .map(|u| endpoint_key(&u))
        .unwrap_or_else(|_| raw.to_string())
}

/// A URL as it may be shown: scheme, host and port, then `/…` if it had
/// more. A `sqlite:` URL (a file name, no credentials) keeps its path and
/// loses only its options. Text that is not a URL is not shown at all.
pub fn redact_url(raw: &str) -> String {
    if let Some(rest) = raw.strip_prefix("sqlite:") {
        let path = rest.split('?').next().unwrap_or("");
        return format!("sqlite:{path}");
    }
    match url::Url::parse(raw) {
        Ok(u) => {
            let origin = origin_of(&u);
            let more = u.path().len() > 1 || u.query().is_some() || u.fragment().is_some();
            if more {
                format!("{origin}/…")
            } else {
                origin
            }
        }
        Err(_) => "(not a URL; not shown, it may hold a secret)".to_string(),
    }
}

/// `scheme://host[:port]` of a parsed URL, without credentials.
pub fn origin_of(u: &url::Url) -> String {
    format!(
        "{}://{}{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_key_has_scheme_host_port_path() {
        let u = url::Url::parse("https://Example.com/a/b?x=1").unwrap();
        assert_eq!(endpoint_key(&u), "https://example.com:443/a/b");
        assert_eq!(endpoint_key_of("not a url"), "not a url");
        assert_eq!(
            key_origin("https://h.example:443/hooks/T0KEN"),
            "https://h.example:443"
        );
    }

    #[test]
    fn shows_only_what_carries_no_secret() {
        assert_eq!(
            redact_url("postgres://payhook:hunter2@db.internal:5433/payhook"),
            "postgres://db.internal:5433/…"
        );
        assert_eq!(
            redact_url("https://mainnet.example/v3/SECRETKEY?x=1"),
            "https://mainnet.example/…"
        );
        assert_eq!(redact_url("https://node.example"), "https://node.example");
        assert_eq!(
            redact_url("sqlite://payhook.db?mode=rwc"),
            "sqlite://payhook.db"
        );
        assert!(!redact_url("not a url hunter2").contains("hunter2"));
    }
}

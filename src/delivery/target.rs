//! Target vetting (SSRF guard): which URLs and addresses payhook may POST to.
//! URLs are checked at merchant creation and again at send time; addresses
//! are checked on what the host resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::error::AppError;

#[derive(Debug, Clone, Copy)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allow_private_targets: bool,
}

/// Checks the URL form: http(s), no credentials, a host, and — for a literal
/// IP host — an allowed address. Returns the parsed URL.
pub fn vet_url(field: &str, raw: &str, policy: TargetPolicy) -> Result<Url, AppError> {
    let url = Url::parse(raw).map_err(|e| {
        AppError::bad_input(format!(
            "{field}: expected an absolute https:// URL, got {raw:?} ({e})"
        ))
    })?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(AppError::bad_input(format!(
                "{field}: http:// URLs are refused unless delivery.allow_http = true; use https://, got {raw:?}"
            )))
        }
        other => {
            return Err(AppError::bad_input(format!(
                "{field}: expected an https:// URL, got scheme {other:?}"
            )))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AppError::bad_input(format!(
            "{field}: URLs with credentials (user:pass@) are refused; put credentials in the merchant's headers"
        )));
    }
    let ip = match url.host() {
        None => {
            return Err(AppError::bad_input(format!(
                "{field}: the URL has no host: {raw:?}"
            )))
        }
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            if d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
            {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                None
            }
        }
    };
    if let Some(ip) = ip {
        vet_ip(field, ip, policy)?;
    }
    Ok(url)
}

/// Refuses non-public addresses unless `allow_private_targets`.
pub fn vet_ip(field: &str, ip: IpAddr, policy: TargetPolicy) -> Result<(), AppError> {
    if policy.allow_private_targets || is_public(ip) {
        return Ok(());
    }
    Err(AppError::bad_input(format!(
        "{field}: {ip} is not a public address (loopback, private, link-local and similar targets are refused \
         unless delivery.allow_private_targets = true)"
    )))
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 maps IPv4 (could reach private v4)
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0))
    // IPv4-compatible
}

/// The rate-limit and circuit key of a URL: scheme + host + port + path.
pub fn endpoint_key(url: &Url) -> String {
    format!(
        "{}://{}:{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0),
        url.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private_targets: false,
    };

    #[test]
    fn refuses_private_spellings() {
        for raw in [
            "https://127.0.0.1/x",
            "https://2130706433/x", // decimal 127.0.0.1
            "https://0x7f000001/x", // hex 127.0.0.1
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://169.254.169.254/latest",
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://172.16.0.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://localhost/",
            "https://localhost./",
        ] {
            assert!(
                vet_url("webhook_url", raw, STRICT).is_err(),
                "{raw} should be refused"
            );
        }
    }

    #[test]
    fn accepts_public_https_and_refuses_http_and_credentials() {
        assert!(vet_url("u", "https://example.com/hook", STRICT).is_ok());
        assert!(vet_url("u", "https://93.184.216.34/hook", STRICT).is_ok());
        let e = vet_url("u", "http://example.com/hook", STRICT).unwrap_err();
        assert!(e.message.contains("allow_http"));
        assert!(vet_url("u", "https://user:pw@example.com/", STRICT).is_err());
        assert!(vet_url("u", "ftp://example.com/", STRICT).is_err());
    }

    #[test]
    fn endpoint_key_has_scheme_host_port_path() {
        let u = Url::parse("https://Example.com/a/b?x=1").unwrap();
        assert_eq!(endpoint_key(&u), "https://example.com:443/a/b");
    }
}

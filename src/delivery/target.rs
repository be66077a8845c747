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

/// The longest target URL accepted (2 KiB): longer ones are refused at
/// creation and never sent.
pub const MAX_URL_BYTES: usize = 2048;

/// Checks the URL form: http(s), no credentials, a host, and — for a literal
/// IP host — an allowed address. Returns the parsed URL.
pub fn vet_url(field: &str, raw: &str, policy: TargetPolicy) -> Result<Url, AppError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(AppError::bad_input(format!(
            "{field}: expected a URL of at most {MAX_URL_BYTES} bytes, got {} bytes",
            raw.len()
        )));
    }
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
        // Names are checked on what they resolve to, by `VettingResolver`
        // at send time (and `vet_url_resolved` at merchant creation).
        Some(Host::Domain(_)) => None,
    };
    if let Some(ip) = ip {
        vet_ip(field, ip, policy)?;
    }
    Ok(url)
}

/// Checks a URL and, for a host name, what it resolves to now (merchant
/// creation). A name that does not resolve is accepted: DNS may be down or
/// not set up yet; the send-time check is the one that protects.
pub async fn vet_url_resolved(
    field: &str,
    raw: &str,
    policy: TargetPolicy,
) -> Result<Url, AppError> {
    let url = vet_url(field, raw, policy)?;
    if let (Some(Host::Domain(name)), false) = (url.host(), policy.allow_private_targets) {
        if let Ok(addrs) = tokio::net::lookup_host((name, 0)).await {
            let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if !addrs.is_empty() && !addrs.iter().any(|ip| is_public(*ip)) {
                return Err(AppError::bad_input(format!(
                    "{field}: {name} resolves to {}, not a public address (refused unless \
                     delivery.allow_private_targets = true)",
                    addrs
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    Ok(url)
}

/// The error a refused resolution carries, so the sender can tell a refused
/// target from a network failure.
#[derive(Debug)]
pub struct TargetRejected(pub String);

impl std::fmt::Display for TargetRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetRejected {}

/// The HTTP client's DNS resolver: resolves with the system resolver, keeps
/// only allowed addresses, and the connection goes to exactly those. The
/// check and the connect use the same answer, so DNS rebinding between a
/// check and the connect cannot reach an internal address.
#[derive(Debug, Clone, Copy)]
pub struct VettingResolver {
    pub policy: TargetPolicy,
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let allowed = resolve_vetted(name.as_str(), 0, policy).await?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Resolves `host` with the system resolver and keeps only the addresses
/// the policy allows; none allowed is a [`TargetRejected`].
pub async fn resolve_vetted(
    host: &str,
    port: u16,
    policy: TargetPolicy,
) -> Result<Vec<std::net::SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let allowed: Vec<std::net::SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| policy.allow_private_targets || is_public(a.ip()))
        .collect();
    if allowed.is_empty() {
        let list: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
        let msg = format!(
            "{host} resolves to {}, not a public address",
            if list.is_empty() {
                "nothing".to_string()
            } else {
                list.join(", ")
            }
        );
        return Err(Box::new(TargetRejected(msg)));
    }
    Ok(allowed)
}

/// Whether a request error is a refusal by `VettingResolver`, and its text.
pub fn rejection(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<TargetRejected>() {
            return Some(r.0.clone());
        }
        cur = e.source();
    }
    None
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
        IpAddr::V6(v6) => is_public_v6(v6),
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
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast (deprecated)
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// Global unicast is `2000::/3`; inside it, the IANA IPv6 special-purpose
/// registry's blocks are refused, and the transition formats that embed an
/// IPv4 address (6to4, Teredo, NAT64) are judged by that address. Outside
/// it, only the IPv4-mapped and IPv4-translated forms can be public (by
/// their IPv4 address).
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return is_public_v4(v4(s[6], s[7])); // ::ffff:0:0/96, IPv4-mapped
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return is_public_v4(v4(s[6], s[7])); // ::ffff:0:0:0/96, IPv4-translated
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64: 64:ff9b::/96 embeds the IPv4 target; 64:ff9b:1::/48 is local use.
        return s[2..6] == [0; 4] && is_public_v4(v4(s[6], s[7]));
    }
    if s[0] & 0xe000 != 0x2000 {
        return false; // outside 2000::/3: loopback, ULA, link-local, multicast, 100::/64, …
    }
    match (s[0], s[1]) {
        (0x2002, _) => is_public_v4(v4(s[1], s[2])), // 6to4 2002::/16
        // Teredo 2001::/32: the server's IPv4, and the client's (inverted).
        (0x2001, 0x0000) => is_public_v4(v4(s[2], s[3])) && is_public_v4(v4(!s[6], !s[7])),
        (0x2001, b) if b < 0x0200 => false, // IETF protocol assignments 2001::/23
        (0x2001, 0x0db8) => false,          // documentation
        (0x3fff, b) if b < 0x1000 => false, // documentation 3fff::/20
        _ => true,
    }
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
            "https://127.0.0.1./x",  // trailing dot
            "https://0x7f.1/",       // short hex form
            "https://017700000001/", // octal
            "https://[::ffff:10.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::]/",
            "https://[::1]:8443/",
            "https://255.255.255.255/",
            "https://224.0.0.1/",
            "https://[ff02::1]/",
            "https://192.0.2.1/", // documentation
            "https://198.51.100.7/",
            "https://203.0.113.9/",
            "https://[2001:db8::1]/",
            "https://198.18.0.1/", // benchmarking
            "https://240.0.0.1/",  // reserved
        ] {
            assert!(
                vet_url("webhook_url", raw, STRICT).is_err(),
                "{raw} should be refused"
            );
        }
    }

    #[test]
    fn ipv6_special_purpose_blocks_and_embedded_ipv4_are_judged() {
        let refused = [
            "::ffff:0:7f00:1",                      // IPv4-translated 127.0.0.1
            "::ffff:0:a00:1",                       // IPv4-translated 10.0.0.1
            "2002:7f00:1::1",                       // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",                    // 6to4 of 169.254.169.254
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
            "2001::1",                              // Teredo, server 0.0.0.0
            "100::1",                               // discard-only 100::/64
            "2001:2::1",                            // benchmarking 2001:2::/48
            "2001:10::1",                           // ORCHID 2001:10::/28
            "2001:20::1",                           // ORCHIDv2
            "3fff::1",                              // documentation 3fff::/20
            "5f00::1",                              // SRv6 SIDs 5f00::/16
            "64:ff9b::a00:1",                       // NAT64 of 10.0.0.1
            "64:ff9b:1::1",                         // local-use NAT64
            "::a00:1",                              // IPv4-compatible (deprecated)
        ];
        for raw in refused {
            let ip: Ipv6Addr = raw.parse().unwrap();
            assert!(!is_public(IpAddr::V6(ip)), "{raw} should be refused");
        }
        assert!(!is_public(IpAddr::V4(Ipv4Addr::new(192, 88, 99, 1))));
        let public = [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "2002:5db8:d822::1",  // 6to4 of 93.184.216.34
            "64:ff9b::5db8:d822", // NAT64 of 93.184.216.34
            "::ffff:93.184.216.34",
            "2001:0:5db8:d822:0:0:a247:2dde", // Teredo, both ends public
        ];
        for raw in public {
            let ip: Ipv6Addr = raw.parse().unwrap();
            assert!(is_public(IpAddr::V6(ip)), "{raw} should be allowed");
        }
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_to_private_addresses() {
        use reqwest::dns::Resolve;
        let strict = VettingResolver { policy: STRICT };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match strict.resolve(name).await {
            Err(e) => e,
            Ok(_) => panic!("localhost must be refused"),
        };
        assert!(rejection(err.as_ref()).is_some_and(|m| m.contains("not a public address")));
        let open = VettingResolver {
            policy: TargetPolicy {
                allow_http: true,
                allow_private_targets: true,
            },
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = open.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn accepts_public_https_and_refuses_http_and_credentials() {
        assert!(vet_url("u", "https://example.com/hook", STRICT).is_ok());
        assert!(vet_url("u", "https://93.184.216.34/hook", STRICT).is_ok());
        let e = vet_url("u", "http://example.com/hook", STRICT).unwrap_err();
        assert!(e.message.contains("allow_http"));
        assert!(vet_url("u", "https://user:pw@example.com/", STRICT).is_err());
        assert!(vet_url("u", "ftp://example.com/", STRICT).is_err());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        let e = vet_url("webhook_url", &long, STRICT).unwrap_err();
        assert!(e.message.contains("at most 2048 bytes"), "{}", e.message);
        let fits = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES - 20));
        assert!(vet_url("u", &fits, STRICT).is_ok());
    }
}

//! The SSRF guard: which addresses an outgoing request may reach. Every request of the crawler,
//! the providers, Search Console, alerts and `net.http_*` passes it, twice over: a URL whose host
//! is a blocked literal address (or `localhost`) is refused before it is queued
//! (`blocked_literal_host`), and every name is resolved by `GuardedResolver`, which refuses it
//! when any of its addresses is blocked and hands the client exactly the addresses it checked
//! (no second lookup, so no DNS rebinding). Redirect targets go through the same resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::error::HttpError;

/// Decides whether the client may connect to an address: `Some(reason)` refuses it.
pub(super) type AddressPolicy = fn(IpAddr) -> Option<&'static str>;

/// reqwest's resolver for every host name the client connects to, redirect targets included. It
/// refuses a name if any of its addresses is blocked, and gives reqwest exactly the addresses it
/// checked, so nothing can look the name up again between the check and the connect (DNS rebinding).
pub(super) struct GuardedResolver {
    pub(super) policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addresses = resolve_checked(name.as_str(), policy).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host`, if `policy` allows all of them. A `Blocked` error here names the host;
/// `error::transport_error` puts the URL in its place.
async fn resolve_checked(host: &str, policy: AddressPolicy) -> Result<Vec<SocketAddr>, HttpError> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|error| HttpError::Dns(format!("{host}: {error}")))?
        .collect();
    if addresses.is_empty() {
        return Err(HttpError::Dns(format!("{host}: no addresses")));
    }
    for address in &addresses {
        if let Some(reason) = policy(address.ip()) {
            return Err(HttpError::Blocked {
                url: host.to_string(),
                address: address.ip(),
                reason: reason.to_string(),
            });
        }
    }
    Ok(addresses)
}

/// Why the SSRF guard will refuse `url` whatever its name resolves to: its host is a literal
/// address the guard blocks, or `localhost` (and names under it), which resolve to loopback by
/// definition. `None` for anything else, including URLs that do not parse (their own check
/// reports those); names are judged when they are resolved.
pub fn blocked_literal_host(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    match parsed.host()? {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then(|| format!("{name} is a loopback name"))
        }
        Host::Ipv4(address) => private_reason(IpAddr::V4(address)).map(|reason| format!("{address} is a {reason} address")),
        Host::Ipv6(address) => private_reason(IpAddr::V6(address)).map(|reason| format!("{address} is a {reason} address")),
    }
}

/// Why the SSRF guard refuses `address` unless private addresses are allowed: loopback,
/// private, link-local (cloud metadata), unspecified, shared (CGNAT), broadcast, multicast,
/// documentation and reserved ranges; IPv4 inside IPv6 (mapped, NAT64) is judged as IPv4.
/// `None`: the address may be reached.
pub(super) fn private_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(address) => ipv4_reason(address),
        IpAddr::V6(address) => embedded_ipv4(address).map_or_else(|| ipv6_reason(address), ipv4_reason),
    }
}

fn ipv4_reason(address: Ipv4Addr) -> Option<&'static str> {
    let reason = match address.octets() {
        [255, 255, 255, 255] => "broadcast",
        [0, ..] => "unspecified",
        [127, ..] => "loopback",
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => "private",
        [169, 254, ..] => "link-local",
        [100, 64..=127, ..] => "shared (CGNAT)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [192, 0, 0, _] | [198, 18..=19, ..] | [240..=255, ..] => "reserved",
        [224..=239, ..] => "multicast",
        _ => return None,
    };
    Some(reason)
}

fn ipv6_reason(address: Ipv6Addr) -> Option<&'static str> {
    let reason = match address.segments() {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // IPv4-compatible addresses, deprecated.
        [0, 0, 0, 0, 0, 0, _, _] => "reserved",
        [first, ..] if first & 0xfe00 == 0xfc00 => "private",
        [first, ..] if first & 0xffc0 == 0xfe80 => "link-local",
        // Deprecated, but still routed inside some networks.
        [first, ..] if first & 0xffc0 == 0xfec0 => "site-local",
        // 6to4 and local-use NAT64 carry an IPv4 address that a relay or translator reaches.
        [0x2002, ..] => "6to4",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64",
        [first, ..] if first & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0x0db8, ..] => "documentation",
        _ => return None,
    };
    Some(reason)
}

/// The IPv4 address that an IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d)
/// or NAT64 (64:ff9b::a.b.c.d) address reaches.
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    match address.segments() {
        [0, 0, 0, 0, 0, 0xffff, high, low]
        | [0, 0, 0, 0, 0xffff, 0, high, low]
        | [0x64, 0xff9b, 0, 0, 0, 0, high, low] => {
            Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused_and_public_ones_allowed() {
        let refused = [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "100.127.255.255",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "2002:c0a8:101::1",
            "2002:808:808::1",
            "64:ff9b:1::a9fe:a9fe",
            "fec0::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
        ];
        for address in refused {
            assert!(private_reason(address.parse().unwrap()).is_some(), "{address} should be refused");
        }
        for address in allowed {
            assert!(private_reason(address.parse().unwrap()).is_none(), "{address} should be allowed");
        }
    }

    #[test]
    fn urls_to_blocked_literal_hosts_are_named_before_they_are_queued() {
        let blocked = [
            ("http://127.0.0.1:8080/x", "127.0.0.1 is a loopback address"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
            ("http://[::1]/", "::1 is a loopback address"),
            ("http://[::ffff:0:a9fe:a9fe]/", "::ffff:0:a9fe:a9fe is a link-local address"),
            ("http://localhost:5432/", "localhost is a loopback name"),
            ("http://API.LOCALHOST./", "api.localhost is a loopback name"),
        ];
        for (url, reason) in blocked {
            assert_eq!(blocked_literal_host(url).as_deref(), Some(reason), "{url}");
        }
        for url in ["https://example.com/", "http://8.8.8.8/", "http://localhost.example.com/", "not a url"] {
            assert_eq!(blocked_literal_host(url), None, "{url}");
        }
    }
}

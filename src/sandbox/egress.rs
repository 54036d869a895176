//! Where the sandbox may send requests on a tenant's behalf (webhook deliveries): public
//! addresses only, unless the operator allows private ones for local testing.
//!
//! A tenant chooses a webhook's URL and then reads `last_status_code`, so an unchecked URL would
//! let it probe the sandbox's own network: which loopback ports answer, the cloud's metadata
//! service. The rule, checked twice:
//! - on `create_webhook`/`update_webhook`, against the URL's text (`check_url`): the scheme, an IP
//!   literal's range, names that are loopback by definition (`localhost`, `*.localhost`) or
//!   metadata services;
//! - at every delivery, against the addresses the name resolves to then (`Resolver`, which the
//!   delivery client uses for DNS): a name may point anywhere by the time it is used. Redirects
//!   are not followed (a 3xx is a failed attempt), and no proxy is used, so the checked address is
//!   the one connected to.
//!
//! Always refused: link-local (169.254/16 with the metadata address 169.254.169.254, fe80::/10),
//! unspecified, broadcast, multicast, shared (100.64/10), reserved and documentation ranges, and
//! the metadata names. Refused unless `allow_private`: loopback (127/8, ::1), private (10/8,
//! 172.16/12, 192.168/16) and unique-local (fc00::/7) addresses, and `localhost`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address is refused, if it is; `None` for a public address.
pub fn refusal(ip: IpAddr, allow_private: bool) -> Option<String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let (class, private) = match ip {
        IpAddr::V4(v4) => classify_v4(v4)?,
        IpAddr::V6(v6) => classify_v6(v6)?,
    };
    if private && allow_private {
        return None;
    }
    let hint = if private {
        "; the sandbox's operator can allow private addresses for local testing (--allow-private-webhooks)"
    } else {
        ""
    };
    Some(format!(
        "{ip} is {class}; webhooks are delivered only to public addresses{hint}"
    ))
}

/// (what the address is, whether it is private rather than always refused), or None if public.
fn classify_v4(ip: Ipv4Addr) -> Option<(&'static str, bool)> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => ("the cloud metadata address", false),
        _ if ip.is_loopback() => ("a loopback address", true),
        _ if ip.is_private() => ("a private address", true),
        _ if ip.is_link_local() => ("a link-local address", false),
        _ if ip.is_unspecified() || a == 0 => ("an unspecified address", false),
        _ if ip.is_broadcast() || ip.is_multicast() => ("a broadcast or multicast address", false),
        (100, 64..=127, _) => ("a shared (carrier-grade NAT) address", false),
        (192, 0, 0) | (198, 18..=19, _) | (240..=255, _, _) => ("a reserved address", false),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => ("a documentation address", false),
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<(&'static str, bool)> {
    let first = ip.segments()[0];
    Some(match first {
        _ if ip.is_loopback() => ("a loopback address", true),
        _ if ip.is_unspecified() => ("an unspecified address", false),
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            ("the cloud metadata address", false)
        }
        _ if first & 0xffc0 == 0xfe80 => ("a link-local address", false),
        _ if first & 0xfe00 == 0xfc00 => ("a unique-local (private) address", true),
        _ if ip.is_multicast() => ("a multicast address", false),
        0x2001 if ip.segments()[1] == 0x0db8 => ("a documentation address", false),
        _ => return None,
    })
}

/// Why a host name is refused by its text alone, if it is.
fn name_refusal(host: &str, allow_private: bool) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return (!allow_private).then(|| {
            format!("{host} is a loopback name; webhooks are delivered only to public addresses; the sandbox's operator can allow private addresses for local testing (--allow-private-webhooks)")
        });
    }
    if host == "metadata" || host == "metadata.google.internal" || host.ends_with(".internal") {
        return Some(format!(
            "{host} names an internal or metadata service; webhooks are delivered only to public addresses"
        ));
    }
    None
}

/// Checks a webhook URL's text: `http` or `https`, a host, and no refused address or name.
pub fn check_url(text: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not {}:",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or("must name a host")?;
    match host_refusal(host, allow_private) {
        Some(reason) => Err(reason),
        None => Ok(url),
    }
}

/// Why a URL's host (as `Url::host_str` gives it: IPv6 in brackets) is refused by its text.
pub fn host_refusal(host: &str, allow_private: bool) -> Option<String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) => refusal(ip, allow_private),
        Err(_) => name_refusal(host, allow_private),
    }
}

/// The delivery client's DNS: resolves with the system resolver, then refuses the name if any
/// of its addresses is refused (a name with one private address among public ones could be
/// connected to the private one).
#[derive(Clone, Copy)]
pub struct Resolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            if let Some(reason) = name_refusal(&host, allow_private) {
                return Err(reason.into());
            }
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for address in &addresses {
                if let Some(reason) = refusal(address.ip(), allow_private) {
                    return Err(format!("{host} resolves to {reason}").into());
                }
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_private_need_the_operator_and_metadata_never_passes() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://[::1]:9/",
            "http://10.1.2.3/",
            "http://192.168.0.10/",
            "http://localhost:8787/x",
            "http://api.localhost/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd12::1]/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        for url in [
            "https://169.254.169.254/latest/meta-data/",
            "http://169.254.1.1/",
            "http://[fe80::1]/",
            "http://0.0.0.0:80/",
            "http://100.100.100.200/",
            "http://metadata.google.internal/",
            "http://[fd00:ec2::254]/",
            "ftp://example.com/",
            "file:///etc/passwd",
        ] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
        assert!(check_url("https://hooks.example.com/trainar", false).is_ok());
        assert!(check_url("http://93.184.216.34:8080/", false).is_ok());
        // Other spellings of loopback normalise to it before the check.
        for url in [
            "https://2130706433/",
            "https://0x7f.0.0.1/",
            "https://127.1/",
            "https://LOCALHOST./",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
        }
        let reason = check_url("http://127.0.0.1:22/", false).unwrap_err();
        assert!(reason.contains("loopback"), "{reason}");
    }
}

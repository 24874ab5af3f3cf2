//! The one policy for URLs an operator enters for targets and sources (the hub calls
//! them, so they must not point it at itself or at the cloud's metadata service).

use std::net::IpAddr;

use url::Url;

/// Longest URL accepted in a target or source definition.
pub const MAX_URL_LEN: usize = 2048;

/// Checks a target base URL an operator entered: `https://` anywhere, `http://` only on
/// loopback (127.0.0.0/8, ::1, `localhost`); no credentials in the URL (they belong in
/// `auth`, which is stored sealed), no query or fragment; never an address that cannot be
/// a remote service (unspecified, link-local such as the cloud metadata endpoint
/// 169.254.169.254, multicast, broadcast).
///
/// Names are checked as written; what a name resolves to is not (the resolver of the
/// function decides).
pub fn check_target_url(raw: &str) -> Result<Url, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the URL is empty".into());
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!("the URL is longer than {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    let scheme = url.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(format!("scheme {scheme:?} is not allowed (use https)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed (use the target's auth)".into());
    }
    if url.query().is_some() {
        return Err("a query string is not allowed in a base URL".into());
    }
    if url.fragment().is_some() {
        return Err("a fragment is not allowed in a base URL".into());
    }
    let host = url.host().ok_or("the URL has no host")?;
    let loopback = match host {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.');
            d.eq_ignore_ascii_case("localhost")
        }
        url::Host::Ipv4(ip) => {
            check_ip(IpAddr::V4(ip))?;
            ip.is_loopback()
        }
        url::Host::Ipv6(ip) => {
            check_ip(IpAddr::V6(ip))?;
            ip.is_loopback()
        }
    };
    if scheme == "http" && !loopback {
        return Err("http:// is only allowed on loopback hosts: use https://".into());
    }
    Ok(url)
}

fn check_ip(ip: IpAddr) -> Result<(), String> {
    let bad = match ip {
        IpAddr::V4(v4) => {
            v4.is_unspecified() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            let mapped = v6.to_ipv4_mapped();
            v6.is_unspecified()
                || v6.is_multicast()
                // fe80::/10, link-local unicast.
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || mapped.is_some_and(|m| check_ip(IpAddr::V4(m)).is_err())
        }
    };
    if bad {
        Err(format!("address {ip} cannot be a target"))
    } else {
        Ok(())
    }
}

//! The one policy for the addresses the hub calls: target and source URLs an operator
//! enters, every request the connectors send, and every address a host name resolves to
//! (so a name that answers 127.0.0.1 at connect time is refused like the literal).
//!
//! An address is one of four classes ([`AddressClass`]):
//!
//! - **public**: allowed, over `https://` only;
//! - **loopback** (127.0.0.0/8, ::1, `localhost`, `*.localhost`) and **private** (10/8,
//!   172.16/12, 192.168/16, 100.64/10 CGNAT, fc00::/7 unique-local, fec0::/10): refused
//!   unless the operator opts in with `PROVISYNC_ALLOW_PRIVATE_TARGETS`
//!   ([`PrivateTargets`]); what the opt-in allows may also be reached over `http://`;
//! - **forbidden**, whatever the opt-in: unspecified (0.0.0.0/8, ::), link-local
//!   (169.254/16, fe80::/10), the cloud metadata services (169.254.169.254, 169.254.170.2,
//!   169.254.170.23, fd00:ec2::254, 100.100.100.200, 192.0.0.192 and their names),
//!   multicast, broadcast, documentation, benchmarking and reserved ranges.
//!
//! IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, translated
//! `::ffff:0:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`,
//! 6to4 `2002::/16`, Teredo `2001::/32`) are judged by the IPv4 address they carry. Odd
//! IPv4 spellings (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`, percent-encoded or
//! full-width digits) are normalised by the WHATWG URL parser (the `url` crate) before
//! any check, so they are the address they mean.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, Ordering};

use url::Url;

/// Longest URL accepted in a target or source definition.
pub const MAX_URL_LEN: usize = 2048;

/// The variable an operator opts in with.
pub const ALLOW_PRIVATE_ENV: &str = "PROVISYNC_ALLOW_PRIVATE_TARGETS";

/// What an operator allows beyond public addresses (`PROVISYNC_ALLOW_PRIVATE_TARGETS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrivateTargets {
    /// Public addresses over https only: the Lambda functions' default
    /// (`PROVISYNC_ALLOW_PRIVATE_TARGETS` unset, `0`, `false`, `no`, `off`, `none`).
    #[default]
    None,
    /// Also loopback, over http or https (`loopback`): the default of `provisync serve`.
    Loopback,
    /// Also loopback and private networks, over http or https (`private`, `1`, `true`,
    /// `yes`, `on`, `all`).
    Private,
}

impl PrivateTargets {
    /// The opt-in a variable's value names; `None` for a value that names none.
    pub fn parse(value: &str) -> Option<PrivateTargets> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" | "none" => Some(PrivateTargets::None),
            "loopback" => Some(PrivateTargets::Loopback),
            "1" | "true" | "yes" | "on" | "all" | "private" => Some(PrivateTargets::Private),
            _ => None,
        }
    }

    /// The value that selects it.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivateTargets::None => "none",
            PrivateTargets::Loopback => "loopback",
            PrivateTargets::Private => "private",
        }
    }
}

/// Why an address can never be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// 0.0.0.0/8 and `::` (on Linux, connecting to 0.0.0.0 reaches the host itself).
    Unspecified,
    LinkLocal,
    /// A cloud instance metadata service (credentials live there).
    Metadata,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment and reserved ranges: never a
    /// real service.
    Reserved,
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Forbidden::Unspecified => "an unspecified address",
            Forbidden::LinkLocal => "a link-local address",
            Forbidden::Metadata => "a cloud metadata service",
            Forbidden::Multicast => "a multicast address",
            Forbidden::Broadcast => "the broadcast address",
            Forbidden::Reserved => "a reserved or documentation address",
        })
    }
}

/// What an address is, for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    Private,
    Forbidden(Forbidden),
}

/// Why a URL or an address was refused. The sentence is shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL is empty")]
    Empty,
    #[error("the URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("not a URL ({0})")]
    Parse(url::ParseError),
    #[error("scheme {0:?} is not allowed (use https)")]
    Scheme(String),
    #[error("credentials in the URL are not allowed (use the target's auth)")]
    Credentials,
    #[error("a query string is not allowed in a base URL")]
    Query,
    #[error("a fragment is not allowed in a base URL")]
    Fragment,
    #[error("the URL has no host")]
    NoHost,
    #[error("{host} is {why}: never allowed")]
    Forbidden { host: String, why: Forbidden },
    #[error(
        "{host} is a {} address: refused unless {ALLOW_PRIVATE_ENV} allows it ({})",
        if *.private { "private-network" } else { "loopback" },
        if *.private { "`private`" } else { "`loopback` or `private`" }
    )]
    NotAllowed { host: String, private: bool },
    #[error(
        "http:// is refused for {host}: use https:// (plain http only reaches the loopback or private addresses {ALLOW_PRIVATE_ENV} allows)"
    )]
    PlainHttp { host: String },
    #[error("{host} resolves to no address the hub may call ({detail})")]
    Resolved { host: String, detail: String },
}

/// The policy: which classes of address may be called (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    pub private: PrivateTargets,
}

/// Names of metadata services, refused before any resolution (the addresses they resolve
/// to are refused anyway).
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

const METADATA_V4: &[Ipv4Addr] = &[
    // AWS, Azure, GCP, OpenStack, DigitalOcean, ...
    Ipv4Addr::new(169, 254, 169, 254),
    // AWS ECS task metadata and credentials.
    Ipv4Addr::new(169, 254, 170, 2),
    // AWS EKS Pod Identity.
    Ipv4Addr::new(169, 254, 170, 23),
    // Alibaba Cloud (inside 100.64/10).
    Ipv4Addr::new(100, 100, 100, 200),
    // Oracle Cloud.
    Ipv4Addr::new(192, 0, 0, 192),
];

/// AWS's IPv6 instance metadata endpoint (inside fc00::/7).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// What `ip` is.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    let o = ip.octets();
    if METADATA_V4.contains(&ip) {
        return Forbidden(self::Forbidden::Metadata);
    }
    if o[0] == 0 {
        return Forbidden(self::Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Loopback;
    }
    if ip.is_link_local() {
        return Forbidden(self::Forbidden::LinkLocal);
    }
    if ip.is_broadcast() {
        return Forbidden(self::Forbidden::Broadcast);
    }
    if ip.is_multicast() {
        return Forbidden(self::Forbidden::Multicast);
    }
    // 240.0.0.0/4 (reserved), 192.0.2/24, 198.51.100/24, 203.0.113/24 (documentation),
    // 198.18/15 (benchmarking), 192.0.0/24 (protocol assignments), 192.88.99/24 (the
    // retired 6to4 relay anycast).
    if o[0] >= 240
        || ip.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
    {
        return Forbidden(self::Forbidden::Reserved);
    }
    // RFC 1918, and 100.64/10 (RFC 6598 shared address space: carrier-grade NAT, and
    // what some clouds use inside their networks).
    if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        return Private;
    }
    Public
}

/// The IPv4 address an IPv6 address carries, by the forms that route to it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let zero = |r: std::ops::Range<usize>| s[r].iter().all(|x| *x == 0);
    // ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (SIIT translated), ::a.b.c.d (compatible).
    if (zero(0..5) && s[5] == 0xffff) || (zero(0..4) && s[4] == 0xffff && s[5] == 0) || zero(0..6) {
        return Some(low);
    }
    // NAT64: 64:ff9b::/96 (RFC 6052) and the local-use 64:ff9b:1::/48 (RFC 8215).
    if s[0] == 0x64 && s[1] == 0xff9b && (zero(2..6) || s[2] == 1) {
        return Some(low);
    }
    // 6to4: 2002:AABB:CCDD::/48 (RFC 3056).
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    let s = ip.segments();
    if ip == METADATA_V6 {
        return Forbidden(self::Forbidden::Metadata);
    }
    if ip.is_unspecified() {
        return Forbidden(self::Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    // Teredo 2001:0::/32 (RFC 4380): the server's address, then the client's (inverted).
    if s[0] == 0x2001 && s[1] == 0 {
        let server = Ipv4Addr::new((s[2] >> 8) as u8, s[2] as u8, (s[3] >> 8) as u8, s[3] as u8);
        let client = Ipv4Addr::new(
            !(s[6] >> 8) as u8,
            !s[6] as u8,
            !(s[7] >> 8) as u8,
            !s[7] as u8,
        );
        return match (classify_v4(server), classify_v4(client)) {
            (Public, c) => c,
            (s, _) => s,
        };
    }
    if s[0] & 0xff00 == 0xff00 {
        return Forbidden(self::Forbidden::Multicast);
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Forbidden(self::Forbidden::LinkLocal);
    }
    // fc00::/7 unique-local (RFC 4193), fec0::/10 the retired site-local.
    if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        return Private;
    }
    // Only 2000::/3 is global unicast; inside it, 2001:db8::/32 and 3fff::/20 are
    // documentation and 2001::/23 holds protocol assignments.
    if s[0] & 0xe000 != 0x2000
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && s[1] & 0xf000 == 0)
        || (s[0] == 0x2001 && s[1] < 0x0200)
    {
        return Forbidden(self::Forbidden::Reserved);
    }
    Public
}

impl UrlPolicy {
    pub const fn new(private: PrivateTargets) -> UrlPolicy {
        UrlPolicy { private }
    }

    /// Whether an address of this class may be called at all.
    pub fn allows(&self, class: AddressClass) -> bool {
        match class {
            AddressClass::Public => true,
            AddressClass::Loopback => self.private >= PrivateTargets::Loopback,
            AddressClass::Private => self.private >= PrivateTargets::Private,
            AddressClass::Forbidden(_) => false,
        }
    }

    /// Checks one address; `plain`: the request is plain http (which never goes to a
    /// public address).
    pub fn check_ip(&self, ip: IpAddr, plain: bool) -> Result<(), UrlError> {
        let host = || match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        match classify(ip) {
            AddressClass::Forbidden(why) => Err(UrlError::Forbidden { host: host(), why }),
            AddressClass::Public if plain => Err(UrlError::PlainHttp { host: host() }),
            AddressClass::Public => Ok(()),
            class if self.allows(class) => Ok(()),
            class => Err(UrlError::NotAllowed {
                host: host(),
                private: class == AddressClass::Private,
            }),
        }
    }

    /// Checks a host name before it is resolved: `localhost` is loopback, metadata
    /// services' names are refused, and plain http to a name needs the opt-in (what the
    /// name resolves to is then checked at connect time).
    pub fn check_name(&self, name: &str, plain: bool) -> Result<(), UrlError> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if n == "localhost" || n.ends_with(".localhost") {
            // RFC 6761 §6.3: always the loopback interface.
            return if self.allows(AddressClass::Loopback) {
                Ok(())
            } else {
                Err(UrlError::NotAllowed {
                    host: name.to_string(),
                    private: false,
                })
            };
        }
        if METADATA_NAMES.contains(&n.as_str()) {
            return Err(UrlError::Forbidden {
                host: name.to_string(),
                why: Forbidden::Metadata,
            });
        }
        // Only `localhost` is known to be loopback before resolution; other names over
        // plain http need the private opt-in (and resolve to a non-public address).
        if plain && self.private < PrivateTargets::Private {
            return Err(UrlError::PlainHttp {
                host: name.to_string(),
            });
        }
        Ok(())
    }

    /// Checks the scheme and host of a URL the hub is about to call (every request,
    /// every redirect): `http`/`https`, no credentials, an allowed host.
    pub fn check_request_url(&self, url: &Url) -> Result<(), UrlError> {
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(UrlError::Scheme(scheme.to_string()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        let plain = scheme == "http";
        match url.host().ok_or(UrlError::NoHost)? {
            url::Host::Domain(d) => self.check_name(d, plain),
            url::Host::Ipv4(ip) => self.check_ip(IpAddr::V4(ip), plain),
            url::Host::Ipv6(ip) => self.check_ip(IpAddr::V6(ip), plain),
        }
    }

    /// Checks a base URL an operator entered for a target or a source: what
    /// [`UrlPolicy::check_request_url`] checks, plus a length limit and no query or
    /// fragment (credentials belong in `auth`, which is stored sealed).
    pub fn check_url(&self, raw: &str) -> Result<Url, UrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if raw.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        let url = Url::parse(raw).map_err(UrlError::Parse)?;
        if url.query().is_some() {
            return Err(UrlError::Query);
        }
        if url.fragment().is_some() {
            return Err(UrlError::Fragment);
        }
        self.check_request_url(&url)?;
        Ok(url)
    }
}

/// 0: not set yet (read from the environment on first use); else `1 + PrivateTargets`.
static PROCESS_POLICY: AtomicU8 = AtomicU8::new(0);

fn encode(p: PrivateTargets) -> u8 {
    match p {
        PrivateTargets::None => 1,
        PrivateTargets::Loopback => 2,
        PrivateTargets::Private => 3,
    }
}

/// The policy of this process: what an entry point set with [`set_process_policy`]
/// (from `PROVISYNC_ALLOW_PRIVATE_TARGETS`, see `config::url_policy_from_env`), else the
/// variable as read on first use (an unreadable value allows nothing more).
pub fn process_policy() -> UrlPolicy {
    let private = match PROCESS_POLICY.load(Ordering::Acquire) {
        2 => PrivateTargets::Loopback,
        3 => PrivateTargets::Private,
        1 => PrivateTargets::None,
        _ => {
            let p = std::env::var(ALLOW_PRIVATE_ENV)
                .ok()
                .and_then(|v| PrivateTargets::parse(&v))
                .unwrap_or_default();
            let _ =
                PROCESS_POLICY.compare_exchange(0, encode(p), Ordering::AcqRel, Ordering::Acquire);
            return process_policy();
        }
    };
    UrlPolicy { private }
}

/// Sets the policy of this process (entry points, from the environment; test harnesses
/// that call peers on loopback, explicitly).
pub fn set_process_policy(policy: UrlPolicy) {
    PROCESS_POLICY.store(encode(policy.private), Ordering::Release);
}

/// [`UrlPolicy::check_url`] with the process policy: the check of every URL in a target
/// or source definition.
pub fn check_target_url(raw: &str) -> Result<Url, UrlError> {
    process_policy().check_url(raw)
}

/// The opt-in of unit tests whose peers listen on loopback (what `provisync serve`
/// allows by default).
#[cfg(test)]
pub(crate) fn allow_loopback_peers() {
    set_process_policy(UrlPolicy::new(PrivateTargets::Loopback));
}

#[cfg(test)]
mod tests;

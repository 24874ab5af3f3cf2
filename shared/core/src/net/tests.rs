use super::*;

const NONE: UrlPolicy = UrlPolicy::new(PrivateTargets::None);
const LOOPBACK: UrlPolicy = UrlPolicy::new(PrivateTargets::Loopback);
const PRIVATE: UrlPolicy = UrlPolicy::new(PrivateTargets::Private);

/// What each policy answers for a URL: accepted (`+`) or refused (`-`), in the order
/// none, loopback, private.
fn verdicts(url: &str) -> String {
    [NONE, LOOPBACK, PRIVATE]
        .iter()
        .map(|p| if p.check_url(url).is_ok() { '+' } else { '-' })
        .collect()
}

/// Every form the security review named, and the odd spellings of IPv4 addresses the
/// WHATWG URL parser normalises: the verdict of each policy.
#[test]
fn url_table() {
    let table: &[(&str, &str)] = &[
        // Public, https: always.
        ("https://scim.example.com/scim/v2", "+++"),
        ("https://8.8.8.8/", "+++"),
        ("https://[2606:4700:4700::1111]/", "+++"),
        ("https://172.32.0.1/", "+++"),
        ("https://100.128.0.1/", "+++"),
        ("https://[64:ff9b::8.8.8.8]/", "+++"),
        // Plain http to a public address: never. A name is taken with the private opt-in
        // and must then resolve to an allowed non-public address (see
        // `provisync_connectors::http::resolve`).
        ("http://scim.example.com/scim/v2", "--+"),
        ("http://8.8.8.8/", "---"),
        ("http://[2606:4700:4700::1111]/", "---"),
        // Loopback (the Lambda Runtime API listens on 127.0.0.1:9001).
        (
            "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
            "-++",
        ),
        ("https://127.0.0.1/", "-++"),
        ("http://127.8.0.1/v2", "-++"),
        ("http://localhost:8080/", "-++"),
        ("http://LOCALHOST./", "-++"),
        ("https://api.localhost/", "-++"),
        ("http://[::1]:1/v2", "-++"),
        // Private networks.
        ("https://10.0.0.1/", "--+"),
        ("http://10.0.0.1/v2", "--+"),
        ("https://172.16.0.1/", "--+"),
        ("https://172.31.255.254/", "--+"),
        ("https://192.168.1.10/", "--+"),
        ("https://100.64.0.1/", "--+"),
        ("https://[fc00::1]/", "--+"),
        ("https://[fd12:3456::1]/", "--+"),
        ("https://[fec0::1]/", "--+"),
        // Metadata services, link-local, unspecified, multicast, broadcast, reserved:
        // never, whatever the opt-in.
        ("https://169.254.169.254/latest/meta-data", "---"),
        ("http://169.254.169.254/", "---"),
        ("http://169.254.170.2/v2/credentials", "---"),
        ("https://[fd00:ec2::254]/", "---"),
        ("https://100.100.100.200/", "---"),
        ("https://192.0.0.192/", "---"),
        ("https://metadata.google.internal/", "---"),
        ("https://instance-data/", "---"),
        ("https://169.254.1.1/", "---"),
        ("https://[fe80::1]/", "---"),
        ("https://0.0.0.0/", "---"),
        ("http://0.0.0.0:8787/", "---"),
        ("https://0.1.2.3/", "---"),
        ("https://[::]/", "---"),
        ("https://224.0.0.1/", "---"),
        ("https://239.255.255.250/", "---"),
        ("https://[ff02::1]/", "---"),
        ("https://255.255.255.255/", "---"),
        ("https://240.0.0.1/", "---"),
        ("https://192.0.2.1/", "---"),
        ("https://198.18.0.1/", "---"),
        ("https://[2001:db8::1]/", "---"),
        ("https://[100::1]/", "---"),
        // IPv6 forms that carry an IPv4 address: judged by it.
        ("https://[::ffff:169.254.169.254]/", "---"),
        ("https://[::ffff:a9fe:a9fe]/", "---"),
        ("https://[::ffff:127.0.0.1]/", "-++"),
        ("https://[::ffff:7f00:1]/", "-++"),
        ("https://[::ffff:10.0.0.1]/", "--+"),
        ("https://[::ffff:0:127.0.0.1]/", "-++"),
        ("https://[::127.0.0.1]/", "-++"),
        ("https://[::169.254.169.254]/", "---"),
        ("https://[::ffff:0.0.0.0]/", "---"),
        ("https://[64:ff9b::169.254.169.254]/", "---"),
        ("https://[64:ff9b::127.0.0.1]/", "-++"),
        ("https://[64:ff9b:1::a00:1]/", "--+"),
        ("https://[2002:a9fe:a9fe::1]/", "---"),
        ("https://[2002:7f00:1::]/", "-++"),
        ("https://[2002:c0a8:101::1]/", "--+"),
        ("https://[2002:808:808::1]/", "+++"),
        // Teredo: client 127.0.0.1 (stored inverted), server 65.54.227.120.
        ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "-++"),
        // Odd IPv4 spellings: decimal, octal, hex, short forms, percent-encoded,
        // full-width digits, a trailing dot.
        ("https://2130706433/", "-++"),
        ("https://2852039166/", "---"),
        ("https://0177.0.0.1/", "-++"),
        ("https://0251.0376.0251.0376/", "---"),
        ("https://0x7f.0x0.0x0.0x1/", "-++"),
        ("https://0x7f000001/", "-++"),
        ("https://0xA9FEA9FE/", "---"),
        ("https://127.1/", "-++"),
        ("https://10.1/", "--+"),
        ("https://169.254.43518/", "---"),
        ("https://0/", "---"),
        ("https://%31%32%37.0.0.1/", "-++"),
        ("https://%31%36%39.254.169.254/", "---"),
        (
            "https://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
            "-++",
        ),
        ("https://127.0.0.1./", "-++"),
        // Not URLs the hub takes, whatever the policy.
        ("ftp://x.example/", "---"),
        ("file:///etc/passwd", "---"),
        ("gopher://127.0.0.1:6379/", "---"),
        ("https://u:p@x.example/", "---"),
        ("https://127.0.0.1:443@x.example/", "---"),
        ("https://x.example/?a=b", "---"),
        ("https://x.example/#f", "---"),
        ("not a url", "---"),
        ("", "---"),
    ];
    let mut wrong = Vec::new();
    for (url, expected) in table {
        let got = verdicts(url);
        if got != *expected {
            wrong.push(format!("{url}: expected {expected}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_parser_normalises_odd_spellings_before_the_check() {
    for raw in [
        "https://2130706433/",
        "https://0177.0.0.1/",
        "https://0x7f.1/",
        "https://127.1/",
        "https://%31%32%37.0.0.1/",
        "https://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
    ] {
        let url = LOOPBACK.check_url(raw).unwrap();
        assert_eq!(
            url.host(),
            Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST)),
            "{raw}"
        );
    }
}

#[test]
fn messages_say_why_and_how_to_allow() {
    let e = NONE.check_url("http://127.0.0.1:9001/").unwrap_err();
    assert_eq!(
        e.to_string(),
        "127.0.0.1 is a loopback address: refused unless PROVISYNC_ALLOW_PRIVATE_TARGETS allows it (`loopback` or `private`)"
    );
    let e = LOOPBACK.check_url("https://10.1.2.3/").unwrap_err();
    assert!(e.to_string().contains("private-network") && e.to_string().contains("`private`"));
    let e = PRIVATE
        .check_url("https://[::ffff:169.254.169.254]/")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "[::ffff:169.254.169.254] is a cloud metadata service: never allowed"
    );
    let e = PRIVATE.check_url("http://8.8.8.8/").unwrap_err();
    assert!(
        e.to_string().starts_with("http:// is refused for 8.8.8.8"),
        "{e}"
    );
    let e = PRIVATE.check_url("https://[fe80::1]/").unwrap_err();
    assert_eq!(
        e.to_string(),
        "[fe80::1] is a link-local address: never allowed"
    );
}

#[test]
fn classes() {
    let c = |s: &str| classify(s.parse().unwrap());
    assert_eq!(c("1.1.1.1"), AddressClass::Public);
    assert_eq!(c("127.0.0.1"), AddressClass::Loopback);
    assert_eq!(c("::1"), AddressClass::Loopback);
    assert_eq!(c("100.127.255.255"), AddressClass::Private);
    assert_eq!(
        c("fd00:ec2::254"),
        AddressClass::Forbidden(Forbidden::Metadata)
    );
    assert_eq!(c("fd00:ec2::253"), AddressClass::Private);
    assert_eq!(
        c("::ffff:224.0.0.1"),
        AddressClass::Forbidden(Forbidden::Multicast)
    );
}

#[test]
fn opt_in_values() {
    for (v, p) in [
        ("", PrivateTargets::None),
        ("0", PrivateTargets::None),
        ("false", PrivateTargets::None),
        ("none", PrivateTargets::None),
        ("loopback", PrivateTargets::Loopback),
        ("Loopback", PrivateTargets::Loopback),
        ("1", PrivateTargets::Private),
        ("true", PrivateTargets::Private),
        ("private", PrivateTargets::Private),
        ("all", PrivateTargets::Private),
    ] {
        assert_eq!(PrivateTargets::parse(v), Some(p), "{v:?}");
    }
    assert_eq!(PrivateTargets::parse("metadata"), None);
}

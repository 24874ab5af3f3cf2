//! Name resolution under the URL policy ([`provisync_core::net`]): a host name is resolved once,
//! every address it gives is checked, and the connection goes to a checked address only.
//! A name that answers a public address when a target is defined and 127.0.0.1 when the
//! hub connects (DNS rebinding) is refused at connect time.
//!
//! reqwest calls the resolver for host names only; IP literals are checked before the
//! request is sent ([`super::HttpClient::send`]).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use provisync_core::connector::http::PolicySource;
use provisync_core::net::UrlError;

/// Resolves with the system resolver (or `inner`, for tests), then keeps only the
/// addresses the policy allows; `plain`: for plain-http requests, which never go to a
/// public address.
pub(crate) struct GuardedResolver {
    pub(crate) policy: PolicySource,
    pub(crate) plain: bool,
    pub(crate) inner: Option<Arc<dyn Resolve>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.get();
        let plain = self.plain;
        let inner = self.inner.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            policy.check_name(&host, plain)?;
            let resolved: Vec<SocketAddr> = match inner {
                Some(r) => r.resolve(name).await?.collect(),
                // getaddrinfo on the blocking pool, as reqwest's own resolver does.
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let mut refused = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check_ip(a.ip(), plain) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.push(e.to_string());
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let detail = if refused.is_empty() {
                    "no address".to_string()
                } else {
                    refused.join("; ")
                };
                return Err(Box::new(UrlError::Resolved { host, detail }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use reqwest::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::http::{HttpClient, HttpPolicy, error_for};
    use provisync_core::connector::ConnectorError;
    use provisync_core::net::{PrivateTargets, UrlPolicy};

    /// A DNS answer per name (what an attacker's name server would say).
    struct FixedDns(HashMap<&'static str, Vec<std::net::IpAddr>>);

    impl Resolve for FixedDns {
        fn resolve(&self, name: Name) -> Resolving {
            let addrs: Vec<SocketAddr> = self
                .0
                .get(name.as_str())
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    /// A plain HTTP server on loopback that counts the connections it accepts and answers
    /// `routes[path]` (a status line and headers), else 200.
    async fn server(routes: Vec<(&'static str, String)>) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let routes = routes.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let answer = routes
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, a)| a.clone())
                        .unwrap_or_else(|| "HTTP/1.1 200 OK".into());
                    let resp =
                        format!("{answer}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        (port, accepted)
    }

    fn client(private: PrivateTargets, dns: &[(&'static str, &[&str])]) -> HttpClient {
        let map = dns
            .iter()
            .map(|(n, ips)| (*n, ips.iter().map(|i| i.parse().unwrap()).collect()))
            .collect();
        HttpClient::with_resolver(
            HttpPolicy {
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(5),
                urls: Some(UrlPolicy::new(private)),
                ..HttpPolicy::default()
            },
            Arc::new(FixedDns(map)),
        )
        .unwrap()
    }

    async fn get(c: &HttpClient, url: &str) -> Result<u16, ConnectorError> {
        let url = reqwest::Url::parse(url).unwrap();
        c.send(c.request(Method::GET, url))
            .await
            .map(|r| r.status.as_u16())
    }

    fn refused_because(r: Result<u16, ConnectorError>, because: &str) {
        match r {
            Err(ConnectorError::Refused {
                status: None,
                reason,
            }) => {
                assert!(reason.contains(because), "{reason}")
            }
            other => panic!("expected a refusal ({because}), got {other:?}"),
        }
    }

    /// DNS rebinding: a name that resolves to 127.0.0.1 when the hub connects is refused
    /// then, without the opt-in, and the loopback service never sees a connection.
    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        let (port, accepted) = server(vec![]).await;
        let dns: &[(&str, &[&str])] = &[
            ("rebind.example", &["127.0.0.1"]),
            ("both.example", &["169.254.169.254", "127.0.0.1"]),
            ("public.example", &["8.8.8.8"]),
        ];
        let strict = client(PrivateTargets::None, dns);
        refused_because(
            get(&strict, &format!("https://rebind.example:{port}/")).await,
            "rebind.example resolves to no address the hub may call (127.0.0.1 is a loopback address",
        );
        refused_because(
            get(&strict, &format!("https://both.example:{port}/")).await,
            "169.254.169.254 is a cloud metadata service: never allowed; 127.0.0.1 is a loopback address",
        );
        // IP literals never reach a resolver: checked before anything is sent.
        refused_because(
            get(&strict, &format!("http://127.0.0.1:{port}/")).await,
            "127.0.0.1 is a loopback address",
        );
        refused_because(
            get(&strict, &format!("https://[::ffff:127.0.0.1]:{port}/")).await,
            "loopback",
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "nothing reached the service"
        );

        // With the opt-in the same name works (plain http to a name needs `private`), and
        // of a mixed answer only the allowed address is used.
        let open = client(PrivateTargets::Private, dns);
        assert_eq!(
            get(&open, &format!("http://rebind.example:{port}/")).await,
            Ok(200)
        );
        assert_eq!(
            get(&open, &format!("http://both.example:{port}/")).await,
            Ok(200)
        );
        // Plain http never goes to a public address, whatever the name says.
        refused_because(
            get(&open, &format!("http://public.example:{port}/")).await,
            "http:// is refused for 8.8.8.8",
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// Redirects: followed only within the origin, never to a refused address.
    #[tokio::test]
    async fn redirects_to_private_addresses_are_not_followed() {
        let (other, other_accepted) = server(vec![]).await;
        let (port, _) = server(vec![
            (
                "/meta",
                "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/".into(),
            ),
            (
                "/private",
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://10.0.0.1/".into(),
            ),
            (
                "/mapped",
                "HTTP/1.1 302 Found\r\nlocation: http://[::ffff:a9fe:a9fe]/".into(),
            ),
            (
                "/other",
                format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{other}/ok"),
            ),
            ("/same", "HTTP/1.1 302 Found\r\nlocation: /ok".into()),
        ])
        .await;
        let c = client(PrivateTargets::Loopback, &[]);
        for (path, to) in [
            ("/meta", "169.254.169.254"),
            ("/private", "10.0.0.1"),
            ("/mapped", "[::ffff:a9fe:a9fe]"),
            ("/other", "127.0.0.1"),
        ] {
            let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap();
            let resp = c.send(c.request(Method::GET, url)).await.unwrap();
            assert!(resp.status.is_redirection(), "{path}: {}", resp.status);
            assert_eq!(
                error_for(&resp, None),
                ConnectorError::Refused {
                    status: Some(resp.status.as_u16()),
                    reason: format!("redirect to {to} not followed"),
                },
                "{path}"
            );
        }
        assert_eq!(other_accepted.load(Ordering::SeqCst), 0);
        assert_eq!(
            get(&c, &format!("http://127.0.0.1:{port}/same")).await,
            Ok(200)
        );
    }
}

//! Where upstream calls may go.
//!
//! A bundle's upstream URL comes from whoever wrote its manifest. Left alone, it could send
//! Palisade's requests, with its workload certificate, to the cloud's metadata service
//! (`169.254.169.254`, which hands out credentials), to another link-local or loopback
//! service on the host, or to Palisade's own ports (a loop, or the admin port's metrics).
//! So these destinations are refused unless the platform names the host as allowed
//! (`upstream.allowedHosts`), and the server's own ports are refused always:
//!
//! - at load, for a URL whose host is an IP address (reqwest connects to it without a
//!   lookup), before any connection is attempted;
//! - at connect time, for a DNS name: the client's resolver checks every address the name
//!   resolves to, so a name pointing at `169.254.169.254` is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// What the platform allows upstream calls to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Hosts (exactly as written in upstream URLs, compared case-insensitively) that may be
    /// loopback, link-local or metadata addresses: a model server beside Palisade on
    /// `127.0.0.1`, say.
    pub allowed_hosts: Vec<String>,
    /// The server's own listening ports (data and admin), never an upstream on this host.
    pub own_ports: Vec<u16>,
}

/// Well-known cloud metadata and host-service addresses outside the link-local ranges.
const METADATA: &[IpAddr] = &[
    // Alibaba Cloud.
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // Azure's host service (wireserver).
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    // AWS over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// Why an address is special, if it is.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if METADATA.contains(&ip) || ip == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)) {
        return Some("a cloud metadata address");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address (169.254.0.0/16)"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => Some("an unspecified address"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address (fe80::/10)"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("an unspecified address"),
        _ => None,
    }
}

/// Whether an address is on this host (where the server's own ports are).
fn local(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

impl EgressPolicy {
    /// Whether `host` is allowed by name.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.trim_start_matches('[').trim_end_matches(']').eq_ignore_ascii_case(host))
    }

    /// Checks one address `host` stands for, on `port`; the error says why and how to
    /// allow it.
    pub fn check(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), String> {
        if local(ip) && self.own_ports.contains(&port) {
            return Err(format!(
                "{host} ({ip}) port {port} is this server's own port; an upstream must be another server"
            ));
        }
        if self.allows_host(host) {
            return Ok(());
        }
        match special(ip) {
            Some(why) => Err(format!(
                "{host} is {why} ({ip}); upstream calls there are refused unless the platform config allows the host by name (upstream.allowedHosts: [{host}])"
            )),
            None => Ok(()),
        }
    }

    /// Checks a URL's host and port before any connection: an IP address now (reqwest
    /// connects to it without a lookup); a DNS name (`localhost` included) is checked when
    /// it is resolved, before connecting (see [`EgressPolicy::resolver`]).
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        let port = url.port_or_known_default().unwrap_or(0);
        let host = url.host_str().unwrap_or_default();
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(host, IpAddr::V4(v4), port),
            Some(url::Host::Ipv6(v6)) => self.check(host, IpAddr::V6(v6), port),
            _ => Ok(()),
        }
    }

    /// A resolver for the client of one upstream on `port`: it resolves names with the
    /// system's resolver and refuses the name when any address it stands for is refused.
    pub fn resolver(self: &Arc<Self>, port: u16) -> GuardedResolver {
        GuardedResolver { policy: self.clone(), port }
    }
}

/// A DNS resolver that applies an [`EgressPolicy`] to every address a name resolves to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    port: u16,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let port = self.port;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await?.collect();
            for addr in &addrs {
                policy
                    .check(&host, addr.ip(), port)
                    .map_err(|refused| -> Box<dyn std::error::Error + Send + Sync> { refused.into() })?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn special_addresses_are_named() {
        for (ip, why) in [
            ("169.254.169.254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("127.0.0.1", "loopback"),
            ("127.9.9.9", "loopback"),
            ("::1", "loopback"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::ffff:127.0.0.1", "loopback"),
            ("fd00:ec2::254", "metadata"),
            ("100.100.100.200", "metadata"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
        ] {
            let found = special(ip.parse().unwrap());
            assert!(found.is_some_and(|f| f.contains(why)), "{ip}: {found:?}");
        }
        for ip in ["10.0.0.1", "192.0.2.7", "2001:db8::1", "8.8.8.8"] {
            assert_eq!(special(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn urls_are_refused_unless_allowed_by_name_and_own_ports_always() {
        let policy = EgressPolicy { allowed_hosts: vec!["127.0.0.1".into()], own_ports: vec![8080, 9090] };
        let check = |url: &str| policy.check_url(&url::Url::parse(url).unwrap());
        let err = check("http://169.254.169.254/latest").unwrap_err();
        assert!(
            err.contains("metadata") && err.contains("upstream.allowedHosts: [169.254.169.254]"),
            "{err}"
        );
        assert!(check("http://[fe80::1]:8000").is_err());
        assert!(check("http://localhost:8000").is_ok(), "a name: refused when it resolves");
        assert!(check("http://[::1]:8000").is_err());
        assert!(check("http://127.0.0.1:8000").is_ok(), "allowed by name");
        let err = check("http://127.0.0.1:9090").unwrap_err();
        assert!(err.contains("own port"), "{err}");
        assert!(check("https://models.example.com").is_ok(), "names are checked when resolved");
        assert!(check("http://10.1.2.3:8080").is_ok(), "another host's 8080");
    }

    #[tokio::test]
    async fn a_name_is_refused_when_it_resolves_to_a_refused_address() {
        use reqwest::dns::Resolve;
        let policy = Arc::new(EgressPolicy::default());
        // `localhost` resolves to loopback through the system's resolver (no packet leaves).
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = policy.resolver(8000).resolve(name).await.err().unwrap().to_string();
        assert!(err.contains("loopback"), "{err}");
        let allowed = Arc::new(EgressPolicy { allowed_hosts: vec!["localhost".into()], own_ports: vec![] });
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(allowed.resolver(8000).resolve(name).await.is_ok());
    }
}

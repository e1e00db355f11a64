//! Where the running server listens, for the CLI's own clients (`policy`, `models served`).
//!
//! `serve` writes `$PALISADE_HOME/server.json` once it listens: the base URL a local client
//! reaches it at and, under TLS, the certificate file clients trust. The commands that talk
//! to a server read it when neither `--server` nor `PALISADE_SERVER` is given, so they
//! follow the server to whatever port and scheme it was started with.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::failure::Failure;

/// The file `serve` writes in the home directory.
pub const SERVER_FILE: &str = "server.json";

/// Where a server listens and what its clients trust.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The base URL, such as `https://127.0.0.1:8443`.
    pub url: String,
    /// The PEM file a client trusts under TLS (the self-signed certificate, or the built-in
    /// CA's roots for a workload identity); none when plaintext or an outside certificate.
    #[serde(default)]
    pub trust: Option<PathBuf>,
    /// The serving process.
    pub pid: u32,
}

/// The URL a local client uses for a listening address: an unspecified address (`0.0.0.0`,
/// `::`) is reached over loopback.
pub fn local_url(scheme: &str, addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Records where this server listens (replacing a previous server's record).
pub fn write(home: &Path, endpoint: &Endpoint) -> Result<(), Failure> {
    let file = home.join(SERVER_FILE);
    let text = serde_json::to_vec_pretty(endpoint).map_err(Failure::other)?;
    let staging = home.join(format!(".{SERVER_FILE}.{}", std::process::id()));
    std::fs::write(&staging, text)
        .and_then(|()| std::fs::rename(&staging, &file))
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", file.display())))
}

/// Removes the record if it is still this process's.
pub fn remove(home: &Path) {
    let file = home.join(SERVER_FILE);
    if read(home).is_some_and(|e| e.pid == std::process::id()) {
        let _ = std::fs::remove_file(file);
    }
}

/// The record of the server last started with this home, if any.
pub fn read(home: &Path) -> Option<Endpoint> {
    let bytes = std::fs::read(home.join(SERVER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_reached_over_loopback() {
        assert_eq!(local_url("http", "0.0.0.0:8080".parse().unwrap()), "http://127.0.0.1:8080");
        assert_eq!(local_url("https", "[::]:8443".parse().unwrap()), "https://[::1]:8443");
        assert_eq!(local_url("http", "127.0.0.1:9".parse().unwrap()), "http://127.0.0.1:9");
    }

    #[test]
    fn the_record_round_trips_and_is_removed_only_by_its_server() {
        let dir = tempfile::tempdir().unwrap();
        let mine = Endpoint { url: "http://127.0.0.1:1".into(), trust: None, pid: std::process::id() };
        write(dir.path(), &mine).unwrap();
        assert_eq!(read(dir.path()), Some(mine));
        let other = Endpoint { url: "http://127.0.0.1:2".into(), trust: None, pid: std::process::id() + 1 };
        write(dir.path(), &other).unwrap();
        remove(dir.path());
        assert_eq!(read(dir.path()), Some(other), "another server's record stays");
    }
}

//! mTLS inputs: Istio `PeerAuthentication` YAML (then the mode it gives a model), SPIFFE
//! ids from client certificates, and PEM certificates and keys.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palisade_tls::{PeerAuthSettings, PeerAuthentications, PeerIdentity, parse_peer_authentication};

fuzz_target!(|data: &[u8]| {
    let _ = palisade_tls::parse_certificates(data, Path::new("fuzz.pem"));
    let _ = palisade_tls::parse_private_key(data, Path::new("fuzz.pem"));
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = PeerIdentity::parse_spiffe_id(text);
    let Ok(policy) = parse_peer_authentication(text, Path::new("fuzz.yaml")) else { return };
    let namespace = policy.namespace.clone();
    let set = PeerAuthentications::new(vec![policy], PeerAuthSettings::default());
    let labels = BTreeMap::from([("app".to_owned(), "m".to_owned())]);
    let _ = set.mtls_mode_for(&namespace, &labels, 8443);
});

//! Adversarial YAML of about 1 MB, as an attacker would send it in a policy `PUT`, a policy
//! file or a manifest: each is refused or parsed in time linear in its size (the second
//! security review's findings 2 and 3: nested `[` took 73 s for 240 KB, 60,000 tiny
//! documents took 3.9 GB). `cargo test --release -p palisade-core --test yaml_adversarial --
//! --nocapture` prints the timings recorded in docs/threat-model.md.

use std::path::Path;
use std::time::{Duration, Instant};

use palisade_core::yaml::{self, Limits, MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, MAX_NODES};

const MB: usize = 1024 * 1024;

/// Generous, for debug builds and a loaded machine: the point is linear against minutes
/// (release builds on a quiet machine stay under 100 ms, see docs/threat-model.md).
fn budget() -> Duration {
    if cfg!(debug_assertions) { Duration::from_secs(5) } else { Duration::from_millis(500) }
}

fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    println!("{name}: {took:?}");
    assert!(took < budget(), "{name} took {took:?}");
    out
}

fn parse(text: &str) -> Result<serde_yaml::Value, yaml::LocatedError> {
    yaml::from_str(Path::new("attack.yaml"), text)
}

#[test]
fn nested_flow_collections_are_refused_at_once() {
    for (open, close) in [("[", "]"), ("{", "}"), ("{a: ", "}")] {
        let depth = (MB - 16) / (open.len() + close.len());
        let text = format!("a: {}{}\n", open.repeat(depth), close.repeat(depth));
        let err = timed(&format!("1 MB of nested `{open}`"), || parse(&text)).unwrap_err();
        assert!(err.message.contains("nest deeper than 64"), "{err}");
        // Unclosed, as the review sent it.
        let text = format!("a: {}", open.repeat(MB / open.len() - 4));
        let err = timed(&format!("1 MB of unclosed `{open}`"), || parse(&text)).unwrap_err();
        assert!(err.message.contains("nest deeper"), "{err}");
    }
}

#[test]
fn block_nesting_is_refused() {
    let mut text = String::new();
    let mut depth = 0;
    while text.len() < MB - 2048 {
        text.push_str(&" ".repeat(depth));
        text.push_str("k:\n");
        depth += 1;
    }
    let err = timed("block mappings nested by indentation", || parse(&text)).unwrap_err();
    assert!(err.message.contains("nest deeper"), "{err}");
    let mut text = String::new();
    let mut depth = 0;
    while text.len() < MB - 2048 {
        text.push_str(&" ".repeat(depth * 2));
        text.push_str("- \n");
        depth += 1;
    }
    let err = timed("block sequences nested by indentation", || parse(&text)).unwrap_err();
    assert!(err.message.contains("nest deeper"), "{err}");
}

#[test]
fn a_megabyte_of_nodes_is_refused_and_the_most_allowed_parses_quickly() {
    let depth = 63;
    let mut text = format!("a: {}", "[".repeat(depth));
    while text.len() < MB - 1024 {
        text.push_str("x, ");
    }
    text.push_str(&"]".repeat(depth));
    text.push('\n');
    let err = timed("1 MB flat list 63 levels deep", || parse(&text)).unwrap_err();
    assert!(err.message.contains("more than 50000 nodes"), "{err}");
    let mut text = String::from("items:\n");
    while text.len() < MB - 64 {
        text.push_str("  - {k: v, n: 1}\n");
    }
    let err = timed("1 MB of small block items", || parse(&text)).unwrap_err();
    assert!(err.message.contains("more than 50000 nodes"), "{err}");
    // The most nodes allowed, 63 levels deep, with long scalars to fill a megabyte.
    let mut text = format!("a: {}", "[".repeat(depth));
    let scalar = "y".repeat(MB / (MAX_NODES - 100) - 2);
    for _ in 0..MAX_NODES - 100 {
        text.push_str(&scalar);
        text.push_str(", ");
    }
    text.push_str(&"]".repeat(depth));
    text.push('\n');
    let value =
        timed(&format!("{} bytes, {} nodes 63 levels deep", text.len(), MAX_NODES - 100), || parse(&text))
            .unwrap();
    assert!(value["a"].is_sequence());
    let mut text = String::from("a: [");
    for _ in 0..MAX_NODES - 10 {
        text.push_str("x, ");
    }
    text.push_str("]\n");
    timed(&format!("{} tiny scalars", MAX_NODES - 10), || parse(&text)).unwrap();
}

#[test]
fn many_tiny_documents_split_in_linear_time() {
    let text = "a: 1\n---\n".repeat(MB / 9);
    let err = timed("116,508 tiny documents", || yaml::documents(Path::new("t.yaml"), &text)).unwrap_err();
    assert!(err.message.contains("more than 1000 documents"), "{err}");
    assert_eq!(err.line, Some(2 * MAX_DOCUMENTS + 1));
    // The most allowed, each parsed; each document is a slice of the file.
    let text = format!("{}{}", "a: 1\n---\n".repeat(MAX_DOCUMENTS - 1), "b: 2\n");
    let docs = timed("1000 documents split", || yaml::documents(Path::new("t.yaml"), &text)).unwrap();
    assert_eq!(docs.len(), MAX_DOCUMENTS);
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    assert!(bytes <= text.len());
    let parsed = timed("and each parsed", || {
        docs.iter().filter(|d| yaml::from_str::<serde_yaml::Value>(Path::new("t.yaml"), **d).is_ok()).count()
    });
    assert_eq!(parsed, MAX_DOCUMENTS);
    let err = yaml::from_str::<u8>(Path::new("t.yaml"), &docs[docs.len() - 1]).unwrap_err();
    assert_eq!(err.line, Some(2 * MAX_DOCUMENTS - 1), "{err}");
    // As one source, the second document is refused before it is parsed.
    let text = "a: 1\n---\n".repeat(MB / 9);
    let err = timed("many documents as one source", || parse(&text)).unwrap_err();
    assert!(err.message.contains("second document"), "{err}");
}

#[test]
fn billion_laughs_are_refused() {
    // Ten levels of ten aliases each: 10^10 nodes once expanded, in 1 KB.
    let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut previous = 'a';
    for name in 'b'..='k' {
        let refs = vec![format!("*{previous}"); 10].join(", ");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    let err = timed("billion laughs", || parse(&text)).unwrap_err();
    assert!(err.message.contains("more than 50000 nodes"), "{err}");
    // One long scalar repeated by many aliases: 500 KB times 100,000.
    let mut text = format!("big: &big \"{}\"\nlist: [", "x".repeat(MB / 2));
    while text.len() < MB - 16 {
        text.push_str("*big, ");
    }
    text.push_str("]\n");
    let err = timed("a 512 KB scalar aliased 87,000 times", || parse(&text)).unwrap_err();
    assert!(err.message.contains("expands to more than"), "{err}");
    // Distinct anchors, each aliased once, up to the node limit.
    let mut text = String::from("items:\n");
    for i in 0..MAX_NODES / 2 - 10 {
        text.push_str(&format!("  - &a{i} v{i}\n  - *a{i}\n"));
    }
    timed(&format!("{} bytes of anchors each aliased once", text.len()), || parse(&text)).unwrap();
}

#[test]
fn documents_over_the_limit_are_refused_by_size() {
    let text = format!("a: \"{}\"\n", "x".repeat(MAX_DOCUMENT_BYTES));
    let err = timed("a document over 1 MiB", || parse(&text)).unwrap_err();
    assert!(err.message.contains("bytes; at most"), "{err}");
    let tight = Limits { max_bytes: 1024, ..Limits::default() };
    assert!(yaml::check(Path::new("t"), "a: [1, 2]\n", tight).is_ok());
    assert!(yaml::check(Path::new("t"), "x".repeat(2000).as_str(), tight).is_err());
}

#[test]
fn peeking_at_the_namespace_of_an_attack_is_bounded() {
    let text = format!("metadata: {{namespace: lab}}\nspec: {}", "[".repeat(MB - 64));
    let found = timed("namespace before 1 MB of `[`", || {
        yaml::peek_scalar(Path::new("p"), text.as_str(), &["metadata", "namespace"], Limits::default())
    })
    .unwrap();
    assert_eq!(found.as_deref(), Some("lab"));
    let text = format!("spec: {}\nmetadata: {{namespace: lab}}\n", "[".repeat(MB - 64));
    let err = timed("namespace after 1 MB of `[`", || {
        yaml::peek_scalar(Path::new("p"), text.as_str(), &["metadata", "namespace"], Limits::default())
    })
    .unwrap_err();
    assert!(err.message.contains("nest deeper"), "{err}");
}

//! Path normalization: Envoy's with Istio's recommended settings (`DECODE_AND_MERGE_SLASHES`),
//! plus Palisade's strictness (NUL and malformed escapes refused). The vectors follow Istio's
//! TestAuthz_PathNormalization and its path-normalization security guidance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_policy::{MAX_PATH_BYTES, PathError, normalize_host, normalize_path};

#[test]
fn normalizes_like_istio_recommends() {
    for (raw, want) in [
        ("/public", "/public"),
        ("/public/../public", "/public"),
        ("/public/../private", "/private"),
        ("/public/./../private", "/private"),
        ("/public/.././private", "/private"),
        ("/public/%2E%2E/private", "/private"),
        ("/public/%2e%2e/private", "/private"),
        ("/public/%2E/%2E%2E/private", "/private"),
        ("/public/%2e/%2e%2e/private", "/private"),
        ("/public/%2E%2E/%2E/private", "/private"),
        ("/public/%2e%2e/%2e/private", "/private"),
        ("/public/..%2Fprivate", "/private"),
        ("/public/..%2fprivate", "/private"),
        ("/public/..%5Cprivate", "/private"),
        ("/public/..%5cprivate", "/private"),
        ("/public\\..\\private", "/private"),
        ("//public/../private", "/private"),
        ("/public//../private", "/private"),
        ("///a////b///", "/a/b/"),
        ("/..", "/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/./b", "/a/b"),
        ("/a/..b/c", "/a/..b/c"),
        ("/a/.b", "/a/.b"),
        ("/a/b?x=/../y", "/a/b"),
        ("/a/b#frag", "/a/b"),
        ("/%7Euser/%41%62%63", "/~user/Abc"),
        ("/a%2db%5fc", "/a-b_c"),
        ("/a%3fb", "/a%3Fb"),
        ("/v2/models/iris/versions/2.0.0%2Bbuild.1/infer", "/v2/models/iris/versions/2.0.0+build.1/infer"),
        ("/v2/models/iris/versions/2.0.0%2bbuild.1/infer", "/v2/models/iris/versions/2.0.0+build.1/infer"),
        ("/a%21%24%26%27%28%29%2A%2B%2C%3B%3D%3A%40", "/a!$&'()*+,;=:@"),
        ("/a%23b%25c%3F%5B%5D%22%3C%3E%60%7B%7D%7C%5E", "/a%23b%25c%3F%5B%5D%22%3C%3E%60%7B%7D%7C%5E"),
        ("/a%252Fb", "/a%252Fb"),
        ("/a%c3%a9", "/a%C3%A9"),
        ("/a b", "/a%20b"),
        ("/a\"b<c>d[e]f{g}h|i^j`k", "/a%22b%3Cc%3Ed%5Be%5Df%7Bg%7Dh%7Ci%5Ej%60k"),
        ("/é", "/%C3%A9"),
        ("\\a\\b", "/a/b"),
        ("%2Fa", "/a"),
        ("/v2/models/iris/infer", "/v2/models/iris/infer"),
    ] {
        assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw:?}");
    }
}

#[test]
fn refuses_what_the_server_answers_400() {
    for (raw, want) in [
        ("/a%00b", PathError::Nul),
        ("/a\0b", PathError::Nul),
        ("/a%", PathError::InvalidEncoding(2)),
        ("/a%4", PathError::InvalidEncoding(2)),
        ("/a%zz", PathError::InvalidEncoding(2)),
        ("", PathError::Empty),
        ("?x=1", PathError::Empty),
        ("a/b", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
    ] {
        assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
    }
    assert_eq!(normalize_path(&format!("/{}", "a".repeat(MAX_PATH_BYTES))), Err(PathError::TooLong));
}

#[test]
fn is_idempotent_on_examples() {
    for raw in ["/a/%2E%2E/b", "/a%252e%252e/b", "/x/%41/", "/%c3%a9/..", "//a//"] {
        let once = normalize_path(raw).expect("normalizes");
        assert_eq!(normalize_path(&once).as_deref(), Ok(once.as_str()), "{raw:?}");
    }
}

#[test]
fn lower_cases_hosts() {
    assert_eq!(normalize_host("Example.COM:8443"), "example.com:8443");
}

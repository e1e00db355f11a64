//! Value matchers with Istio's semantics: exact, `prefix*`, `*suffix`, `*`; CIDR blocks;
//! path templates; namespace globs; request-principal patterns.

use std::fmt;
use std::net::IpAddr;

/// A string pattern as Istio writes them: `*` (present), `*suffix`, `prefix*` or exact.
///
/// Istio checks a leading `*` before a trailing one, so `*/admin*` is a suffix match on
/// `/admin*` with a literal star, exactly as Istio builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrMatch {
    /// `*`: the value is present. Most fields also require it to be non-empty (Istio's `.+`).
    Present,
    /// `prefix*`.
    Prefix(Box<str>),
    /// `*suffix`.
    Suffix(Box<str>),
    /// No wildcard.
    Exact(Box<str>),
}

impl StrMatch {
    pub(crate) fn parse(value: &str) -> StrMatch {
        if value == "*" {
            StrMatch::Present
        } else if let Some(rest) = value.strip_prefix('*') {
            StrMatch::Suffix(rest.into())
        } else if let Some(rest) = value.strip_suffix('*') {
            StrMatch::Prefix(rest.into())
        } else {
            StrMatch::Exact(value.into())
        }
    }

    /// Like [`StrMatch::parse`] but lower-cased, for case-insensitive fields (hosts).
    pub(crate) fn parse_lowercase(value: &str) -> StrMatch {
        StrMatch::parse(&value.to_ascii_lowercase())
    }

    /// Case-sensitive match; `*` needs a non-empty value (Envoy's `.+` regex).
    #[inline]
    pub(crate) fn matches(&self, value: &str) -> bool {
        let v = value.as_bytes();
        match self {
            StrMatch::Present => !v.is_empty(),
            StrMatch::Prefix(p) => v.len() >= p.len() && bytes_eq(&v[..p.len()], p.as_bytes()),
            StrMatch::Suffix(s) => v.len() >= s.len() && bytes_eq(&v[v.len() - s.len()..], s.as_bytes()),
            StrMatch::Exact(e) => bytes_eq(v, e.as_bytes()),
        }
    }

    /// ASCII case-insensitive match; the pattern is already lower-case.
    pub(crate) fn matches_ignore_case(&self, value: &str) -> bool {
        let v = value.as_bytes();
        match self {
            StrMatch::Present => !value.is_empty(),
            StrMatch::Prefix(p) => v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p.as_bytes()),
            StrMatch::Suffix(s) => {
                v.len() >= s.len() && v[v.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            StrMatch::Exact(e) => v.eq_ignore_ascii_case(e.as_bytes()),
        }
    }
}

/// Byte equality that rejects on length and on the last and first bytes before calling
/// `memcmp`: policy values that differ usually differ there (`user1@` vs `alice@`,
/// `/models/a/` vs `/models/iris/infer`), and most comparisons in an evaluation fail.
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    match (a.last(), b.last(), a.first(), b.first()) {
        (Some(al), Some(bl), Some(af), Some(bf)) => a.len() == b.len() && al == bl && af == bf && a == b,
        _ => a.len() == b.len(),
    }
}

/// An IP block: an address (a /32 or /128) or a CIDR range, as Istio accepts them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// Parses `1.2.3.4`, `10.0.0.0/8`, `2001:db8::/32`. Host bits under the mask are ignored,
    /// as Envoy does; an IPv4-mapped IPv6 range of /96 or longer becomes the IPv4 range.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            if prefix.is_some() {
                format!("bad CIDR range ({text}): not an IP address before '/'")
            } else {
                format!("bad IP address ({text})")
            }
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(len) => {
                // Decimal without sign or leading zeros, as Go's netip.ParsePrefix wants.
                let canonical =
                    len.bytes().all(|b| b.is_ascii_digit()) && (len == "0" || !len.starts_with('0'));
                match len.parse::<u8>() {
                    Ok(bits) if canonical && bits <= max => bits,
                    _ => return Err(format!("bad CIDR range ({text}): the prefix length must be 0-{max}")),
                }
            }
        };
        let (addr, prefix_len) = match addr {
            IpAddr::V6(v6) if prefix_len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix_len - 96),
                None => (addr, prefix_len),
            },
            _ => (addr, prefix_len),
        };
        Ok(Cidr { addr: mask(addr, prefix_len), prefix_len })
    }

    /// Whether the address is inside the block; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix_len) == self.addr
            }
            _ => false,
        }
    }
}

fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len)) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix_len == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix_len)) };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

/// `{*}`: exactly one path segment.
pub const MATCH_ONE_TEMPLATE: &str = "{*}";
/// `{**}`: zero or more characters including `/`; at most once, after every `{*}`.
pub const MATCH_ANY_TEMPLATE: &str = "{**}";

/// Whether a path pattern uses `{*}` or `{**}`.
pub(crate) fn contains_path_template(path: &str) -> bool {
    path.contains(MATCH_ONE_TEMPLATE) || path.contains(MATCH_ANY_TEMPLATE)
}

/// An RFC 3986 `pchar` that Envoy's URI template matcher accepts in a segment.
fn is_template_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
}

/// Applies Istio's `CheckValidPathTemplate` rules to one `paths`/`notPaths` value.
pub(crate) fn check_path_template(path: &str) -> Result<(), String> {
    let has_template = contains_path_template(path);
    let mut found_any = false;
    for glob in path.trim_matches('/').split('/') {
        if glob == MATCH_ONE_TEMPLATE && !found_any {
            continue;
        }
        if glob == MATCH_ANY_TEMPLATE && !found_any {
            found_any = true;
            continue;
        }
        if glob == MATCH_ANY_TEMPLATE || glob == MATCH_ONE_TEMPLATE {
            return Err(format!("invalid path template {path}: {{**}} must be the last operator"));
        }
        if glob.contains(['{', '}']) {
            return Err(format!(
                "invalid path template {path}: '{{' or '}}' may only appear in a whole {{*}} or {{**}} segment"
            ));
        }
        if has_template && (glob.is_empty() || !glob.bytes().all(is_template_pchar)) {
            return Err(format!(
                "invalid path template {path}: segment `{glob}` is not a valid literal (letters, digits and -._~%!$&'()+,;:@=)"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateToken {
    Literal(Box<str>),
    One,
}

/// A compiled `{*}` / `{**}` path template, matched like Envoy's `uri_template` matcher:
/// `{*}` is `[pchar]+`, `{**}` is `[pchar/]*`, literals match exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    head: Vec<TemplateToken>,
    /// Present when the template has `{**}`: the literal text after it.
    tail: Option<Box<str>>,
}

impl PathTemplate {
    /// Compiles a template already accepted by [`check_path_template`].
    pub(crate) fn compile(template: &str) -> PathTemplate {
        let mut head = Vec::new();
        let mut rest = template;
        let mut tail = None;
        while !rest.is_empty() {
            let one = rest.find(MATCH_ONE_TEMPLATE);
            let any = rest.find(MATCH_ANY_TEMPLATE);
            match (one, any) {
                (_, Some(a)) if one.is_none_or(|o| a <= o) => {
                    if a > 0 {
                        head.push(TemplateToken::Literal(rest[..a].into()));
                    }
                    tail = Some(rest[a + MATCH_ANY_TEMPLATE.len()..].into());
                    break;
                }
                (Some(o), _) => {
                    if o > 0 {
                        head.push(TemplateToken::Literal(rest[..o].into()));
                    }
                    head.push(TemplateToken::One);
                    rest = &rest[o + MATCH_ONE_TEMPLATE.len()..];
                }
                _ => {
                    head.push(TemplateToken::Literal(rest.into()));
                    rest = "";
                }
            }
        }
        PathTemplate { head, tail }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        let bytes = path.as_bytes();
        let mut at = 0;
        for token in &self.head {
            match token {
                TemplateToken::Literal(lit) => {
                    if !bytes[at..].starts_with(lit.as_bytes()) {
                        return false;
                    }
                    at += lit.len();
                }
                TemplateToken::One => {
                    // A `{*}` is a whole segment, so the next template character is '/' or
                    // the end: consuming the longest pchar run is the only possible match.
                    let run = bytes[at..].iter().take_while(|b| is_template_pchar(**b)).count();
                    if run == 0 {
                        return false;
                    }
                    at += run;
                }
            }
        }
        match &self.tail {
            None => at == bytes.len(),
            Some(tail) => {
                let rest = &bytes[at..];
                if rest.len() < tail.len() || !rest.ends_with(tail.as_bytes()) {
                    return false;
                }
                rest[..rest.len() - tail.len()].iter().all(|b| *b == b'/' || is_template_pchar(*b))
            }
        }
    }
}

/// A `paths` / `notPaths` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathMatch {
    Str(StrMatch),
    Template(PathTemplate),
}

impl PathMatch {
    pub(crate) fn compile(value: &str) -> PathMatch {
        if contains_path_template(value) {
            PathMatch::Template(PathTemplate::compile(value))
        } else {
            PathMatch::Str(StrMatch::parse(value))
        }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Str(m) => m.matches(path),
            PathMatch::Template(t) => t.matches(path),
        }
    }
}

/// Full-match of a glob in which `*` matches any run of characters (including `/`).
pub(crate) fn glob_match(pieces: &[Box<str>], subject: &str) -> bool {
    let (first, rest) = match pieces.split_first() {
        Some(split) => split,
        None => return subject.is_empty(),
    };
    let Some((last, middle)) = rest.split_last() else {
        return subject == &**first;
    };
    if subject.len() < first.len() + last.len()
        || !subject.starts_with(&**first)
        || !subject.ends_with(&**last)
    {
        return false;
    }
    let mut window = &subject[first.len()..subject.len() - last.len()];
    for piece in middle {
        match window.find(&**piece) {
            Some(i) => window = &window[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A `namespaces` value matched like Istio's `.*/ns/<value>/.*` regex on the peer identity,
/// where `*` inside the value matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceGlob {
    pieces: Vec<Box<str>>,
}

impl NamespaceGlob {
    pub(crate) fn compile(value: &str) -> NamespaceGlob {
        let pattern = format!("*/ns/{value}/*");
        NamespaceGlob { pieces: pattern.split('*').map(Box::from).collect() }
    }

    pub(crate) fn matches(&self, principal: &str) -> bool {
        glob_match(&self.pieces, principal)
    }
}

/// A `serviceAccounts` value, `ns/name`, matched like Istio's
/// `spiffe://.+/ns/<ns>/(.+/|)sa/<name>(/.+)?` regex on the peer identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceAccountMatch {
    ns_marker: Box<str>,
    sa_marker: Box<str>,
}

impl ServiceAccountMatch {
    /// `value` is `name` (in `default_namespace`) or `namespace/name`.
    pub(crate) fn compile(value: &str, default_namespace: &str) -> ServiceAccountMatch {
        let (ns, sa) = value.split_once('/').unwrap_or((default_namespace, value));
        ServiceAccountMatch { ns_marker: format!("/ns/{ns}/").into(), sa_marker: format!("sa/{sa}").into() }
    }

    /// `principal` is the SPIFFE id without `spiffe://`.
    pub(crate) fn matches(&self, principal: &str) -> bool {
        let mut search_from = 1;
        while search_from < principal.len() {
            let Some(found) = principal.get(search_from..).and_then(|s| s.find(&*self.ns_marker)) else {
                return false;
            };
            let ns_at = search_from + found;
            let after = &principal[ns_at + self.ns_marker.len()..];
            if Self::sa_tail_matches(after, &self.sa_marker) {
                return true;
            }
            search_from = ns_at + 1;
        }
        false
    }

    /// Matches `(.+/|)sa/<name>(/.+)?` against the whole of `s`.
    fn sa_tail_matches(s: &str, sa_marker: &str) -> bool {
        let mut from = 0;
        while let Some(found) = s.get(from..).and_then(|t| t.find(sa_marker)) {
            let at = from + found;
            let preceded_ok = at == 0 || (at >= 2 && s.as_bytes()[at - 1] == b'/');
            let end = &s[at + sa_marker.len()..];
            let followed_ok = end.is_empty() || (end.len() >= 2 && end.starts_with('/'));
            if preceded_ok && followed_ok {
                return true;
            }
            from = at + 1;
        }
        false
    }
}

/// A `trustDomains` value matched on the peer identity's trust domain (the text before
/// the first `/`): `*` any peer, `td*`, `*td`, or exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustDomainMatch(StrMatch);

impl TrustDomainMatch {
    pub(crate) fn compile(value: &str) -> TrustDomainMatch {
        TrustDomainMatch(StrMatch::parse(value))
    }

    pub(crate) fn matches(&self, principal: &str) -> bool {
        if self.0 == StrMatch::Present {
            return true;
        }
        match principal.split_once('/') {
            Some((td, _)) => match &self.0 {
                StrMatch::Exact(e) => td == &**e,
                StrMatch::Prefix(p) => td.starts_with(&**p),
                StrMatch::Suffix(s) => td.ends_with(&**s),
                StrMatch::Present => true,
            },
            None => false,
        }
    }
}

/// Istio's matcher for `.+` in request-principal patterns: any non-empty value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimMatch {
    Any,
    Str(StrMatch),
}

impl ClaimMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ClaimMatch::Any => !value.is_empty(),
            ClaimMatch::Str(m) => m.matches(value),
        }
    }
}

/// A `requestPrincipals` / `request.auth.principal` value, split into `iss` and `sub`
/// matchers on the last `/` exactly as Istio's generator does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPrincipalMatch {
    pub(crate) iss: ClaimMatch,
    pub(crate) sub: ClaimMatch,
}

impl RequestPrincipalMatch {
    pub(crate) fn compile(value: &str) -> RequestPrincipalMatch {
        let split = value.rfind('/').map(|i| (&value[..i], &value[i + 1..]));
        let exact = |s: &str| ClaimMatch::Str(StrMatch::Exact(s.into()));
        let (iss, sub) = if value == "*" {
            (ClaimMatch::Any, ClaimMatch::Any)
        } else if let Some(stripped) = value.strip_prefix('*') {
            match split {
                Some((iss, sub)) => {
                    let iss = if iss == "*" {
                        ClaimMatch::Any
                    } else {
                        ClaimMatch::Str(StrMatch::Suffix(iss.trim_start_matches_once('*').into()))
                    };
                    (iss, exact(sub))
                }
                None => (ClaimMatch::Any, ClaimMatch::Str(StrMatch::Suffix(stripped.into()))),
            }
        } else if let Some(stripped) = value.strip_suffix('*') {
            match split {
                Some((iss, sub)) => {
                    let sub = if sub == "*" {
                        ClaimMatch::Any
                    } else {
                        ClaimMatch::Str(StrMatch::Prefix(sub.trim_end_matches_once('*').into()))
                    };
                    (exact(iss), sub)
                }
                None => (ClaimMatch::Str(StrMatch::Prefix(stripped.into())), ClaimMatch::Any),
            }
        } else {
            match split {
                Some((iss, sub)) => (exact(iss), exact(sub)),
                None => (exact(value), exact("")),
            }
        };
        RequestPrincipalMatch { iss, sub }
    }

    pub(crate) fn matches(&self, iss: &str, sub: &str) -> bool {
        self.iss.matches(iss) && self.sub.matches(sub)
    }
}

trait TrimOnce {
    fn trim_start_matches_once(&self, c: char) -> &str;
    fn trim_end_matches_once(&self, c: char) -> &str;
}

impl TrimOnce for str {
    fn trim_start_matches_once(&self, c: char) -> &str {
        self.strip_prefix(c).unwrap_or(self)
    }
    fn trim_end_matches_once(&self, c: char) -> &str {
        self.strip_suffix(c).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_match_classifies_like_istio() {
        assert_eq!(StrMatch::parse("*"), StrMatch::Present);
        assert_eq!(StrMatch::parse("*/productpage*"), StrMatch::Suffix("/productpage*".into()));
        assert_eq!(StrMatch::parse("/productpage*"), StrMatch::Prefix("/productpage".into()));
        assert_eq!(StrMatch::parse("/productpage"), StrMatch::Exact("/productpage".into()));
    }

    #[test]
    fn template_compiles_into_tokens() {
        let t = PathTemplate::compile("/{*}/foo/{**}/bar");
        assert_eq!(
            t.head,
            vec![
                TemplateToken::Literal("/".into()),
                TemplateToken::One,
                TemplateToken::Literal("/foo/".into())
            ]
        );
        assert_eq!(t.tail.as_deref(), Some("/bar"));
    }

    #[test]
    fn cidr_parses_like_go_netip() {
        for bad in [
            "10.0.0.1/08",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "::1/129",
            "a.b.c.d",
            "1.2.3.4/8/8",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let block = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(block.to_string(), "10.0.0.0/8");
        assert!(block.contains("10.255.0.1".parse().unwrap()));
        assert!(!block.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert_eq!(Cidr::parse("::ffff:10.0.0.0/104").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn glob_handles_edges() {
        let pieces = |p: &str| p.split('*').map(Box::from).collect::<Vec<_>>();
        assert!(glob_match(&pieces("a*b"), "ab"));
        assert!(!glob_match(&pieces("ab*ba"), "aba"));
        assert!(glob_match(&pieces("*"), ""));
        assert!(glob_match(&pieces("x"), "x"));
        assert!(!glob_match(&pieces("x"), "xx"));
        assert!(glob_match(&pieces("*a*a*"), "banana"));
    }
}

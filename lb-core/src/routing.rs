//! Rules → decision. Rules are compiled once (regexes built, CIDRs parsed, patterns
//! lowercased) so that evaluating a connection neither allocates nor locks.
use std::net::IpAddr;

use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder};

use crate::{error::ConfigError, model::Rule};

/// What a route's rules can see of a connection.
pub trait HelloFacts {
    /// Server name from SNI, if the client sent one.
    fn sni(&self) -> Option<&str>;
    /// Protocol ids the client offered in ALPN, in its order.
    fn alpn_ids(&self) -> impl Iterator<Item = &[u8]> + '_;
}

/// Routes read the hello as the reader kept it.
impl HelloFacts for crate::hello::ClientHello {
    fn sni(&self) -> Option<&str> {
        crate::hello::ClientHello::sni(self)
    }
    fn alpn_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.alpn()
    }
}

/// The facts of one connection: its source, and its ClientHello when it spoke TLS.
pub struct ConnFacts<'a, H: HelloFacts> {
    /// The client's address, canonical (an IPv4 client of a dual-stack socket as IPv4).
    pub source: IpAddr,
    /// None for plain TCP, and on frontends whose rules never look at the hello.
    pub hello: Option<&'a H>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProtocolPattern {
    Tls,
    Tcp,
    Http2,
    Http11,
}

#[derive(Debug)]
enum StringTest {
    /// `is` and `in`: one of these (lowercased for SNI).
    OneOf(Vec<Vec<u8>>),
    Contains(Vec<u8>),
    StartsWith(Vec<u8>),
    EndsWith(Vec<u8>),
    Matches(Regex),
    Exists,
}

#[derive(Debug)]
enum Test {
    Protocol(Vec<ProtocolPattern>),
    Sni(StringTest),
    Alpn(StringTest),
    Source(Vec<IpNet>),
}

/// A rule ready to judge connections: patterns parsed, regexes built, names lowercased.
#[derive(Debug)]
pub struct CompiledRule {
    /// The rule's id, for counters and errors.
    pub id: u32,
    negate: bool,
    test: Test,
}

/// Field and match names IPLB allows, for error messages and `/availableRouteRules`.
pub const FIELDS: &[(&str, &[&str])] = &[
    ("protocol", &["is", "in"]),
    ("sni", &["is", "in", "contains", "startswith", "endswith", "matches", "exists"]),
    ("host", &["is", "in", "contains", "startswith", "endswith", "matches", "exists"]),
    ("alpn", &["is", "in", "contains", "startswith", "endswith", "matches", "exists"]),
    ("source", &["is", "in"]),
];

impl CompiledRule {
    /// Checks the rule against SPEC's fields and matches and compiles it; errors name the
    /// rule's field at fault.
    pub fn compile(rule: &Rule, id: u32) -> Result<Self, ConfigError> {
        let err = |field: &'static str, message: String| ConfigError::new("rule", Some(id), field, message);
        let Some((_, matches)) = FIELDS.iter().find(|(f, _)| *f == rule.field) else {
            let names: Vec<&str> = FIELDS.iter().map(|(f, _)| *f).collect();
            return Err(err("field", format!("unknown field {:?}; expected one of {}", rule.field, names.join(", "))));
        };
        if !matches.contains(&rule.match_.as_str()) {
            return Err(err("match", format!("field {:?} does not take match {:?}; expected one of {}", rule.field, rule.match_, matches.join(", "))));
        }
        let pattern = match (rule.match_.as_str(), rule.pattern.as_deref()) {
            ("exists", _) => "",
            (_, Some(p)) if !p.is_empty() => p,
            _ => return Err(err("pattern", format!("match {:?} needs a pattern", rule.match_))),
        };
        let items = || -> Vec<&str> {
            if rule.match_ == "in" {
                pattern.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
            } else {
                vec![pattern.trim()]
            }
        };
        let test = match rule.field.as_str() {
            "protocol" => Test::Protocol(
                items()
                    .into_iter()
                    .map(|p| parse_protocol(p).ok_or_else(|| err("pattern", format!("unknown protocol {p:?}; expected tls, tcp, http/2.0 or http/1.1"))))
                    .collect::<Result<_, _>>()?,
            ),
            "sni" | "host" => Test::Sni(string_test(&rule.match_, pattern, &items(), true).map_err(|m| err("pattern", m))?),
            "alpn" => Test::Alpn(string_test(&rule.match_, pattern, &items(), false).map_err(|m| err("pattern", m))?),
            "source" => Test::Source(
                items()
                    .into_iter()
                    .map(|p| parse_source(p).ok_or_else(|| err("pattern", format!("{p:?} is not an IP address or CIDR"))))
                    .collect::<Result<_, _>>()?,
            ),
            _ => unreachable!("field checked against FIELDS above"),
        };
        if rule.sub_field.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(err("subField", format!("field {:?} takes no subField", rule.field)));
        }
        Ok(Self { id, negate: rule.negate, test })
    }

    /// Whether this rule needs the ClientHello to decide (source rules do not).
    pub fn needs_hello(&self) -> bool {
        !matches!(self.test, Test::Source(_))
    }

    /// Whether the connection satisfies the rule (negation applied).
    pub fn matches<H: HelloFacts>(&self, facts: &ConnFacts<'_, H>) -> bool {
        let result = match &self.test {
            Test::Protocol(patterns) => patterns.iter().any(|p| protocol_matches(*p, facts.hello)),
            Test::Sni(test) => match facts.hello.and_then(|h| h.sni()) {
                Some(name) => test.matches_one(name.as_bytes(), true),
                None => false,
            },
            Test::Alpn(test) => match facts.hello {
                Some(hello) => match test {
                    StringTest::Exists => hello.alpn_ids().next().is_some(),
                    _ => hello.alpn_ids().any(|id| test.matches_one(id, false)),
                },
                None => false,
            },
            Test::Source(nets) => nets.iter().any(|net| net.contains(&canonical(facts.source))),
        };
        result != self.negate
    }
}

impl StringTest {
    fn matches_one(&self, value: &[u8], case_insensitive: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| if case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b };
        match self {
            StringTest::OneOf(options) => options.iter().any(|o| eq(o, value)),
            StringTest::Contains(p) => p.is_empty() || value.windows(p.len()).any(|w| eq(w, p)),
            StringTest::StartsWith(p) => value.len() >= p.len() && eq(&value[..p.len()], p),
            StringTest::EndsWith(p) => value.len() >= p.len() && eq(&value[value.len() - p.len()..], p),
            StringTest::Matches(re) => re.is_match(value),
            StringTest::Exists => true,
        }
    }
}

fn string_test(kind: &str, pattern: &str, items: &[&str], case_insensitive: bool) -> Result<StringTest, String> {
    let bytes = |s: &str| if case_insensitive { s.to_ascii_lowercase().into_bytes() } else { s.as_bytes().to_vec() };
    Ok(match kind {
        "is" | "in" => StringTest::OneOf(items.iter().map(|s| bytes(s)).collect()),
        "contains" => StringTest::Contains(bytes(pattern)),
        "startswith" => StringTest::StartsWith(bytes(pattern)),
        "endswith" => StringTest::EndsWith(bytes(pattern)),
        "matches" => StringTest::Matches(
            RegexBuilder::new(pattern)
                .case_insensitive(case_insensitive)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("regular expression {pattern:?} does not compile: {e}"))?,
        ),
        "exists" => StringTest::Exists,
        other => return Err(format!("unknown match {other:?}")),
    })
}

fn parse_protocol(p: &str) -> Option<ProtocolPattern> {
    match p.to_ascii_lowercase().as_str() {
        "tls" | "ssl" => Some(ProtocolPattern::Tls),
        "tcp" => Some(ProtocolPattern::Tcp),
        "http/2.0" | "http/2" | "h2" => Some(ProtocolPattern::Http2),
        "http/1.1" => Some(ProtocolPattern::Http11),
        _ => None,
    }
}

fn protocol_matches<H: HelloFacts>(pattern: ProtocolPattern, hello: Option<&H>) -> bool {
    match (pattern, hello) {
        (ProtocolPattern::Tcp, None) => true,
        (ProtocolPattern::Tcp, Some(_)) | (_, None) => false,
        (ProtocolPattern::Tls, Some(_)) => true,
        (ProtocolPattern::Http2, Some(h)) => h.alpn_ids().any(|id| id == b"h2"),
        (ProtocolPattern::Http11, Some(h)) => h.alpn_ids().any(|id| id == b"http/1.1"),
    }
}

/// An address or a CIDR; a bare address means /32 or /128. An IPv4-mapped IPv6 network
/// (`::ffff:10.0.0.0/104`) becomes the IPv4 network it names (`10.0.0.0/8`): clients are
/// matched by their canonical (IPv4) address, so the mapped form would never match.
pub fn parse_source(p: &str) -> Option<IpNet> {
    let net = match p.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => IpNet::from(p.parse::<IpAddr>().ok()?),
    };
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.network().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            return ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok().map(IpNet::V4);
        }
    }
    Some(net)
}

/// IPv4 clients of a dual-stack listener appear as ::ffff:a.b.c.d; rules are written in IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_sources_become_ipv4_networks() {
        assert_eq!(parse_source("::ffff:10.0.0.0/104"), Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(parse_source("::ffff:192.0.2.7"), Some("192.0.2.7/32".parse().unwrap()));
        assert_eq!(parse_source("::ffff:192.0.2.7/128"), Some("192.0.2.7/32".parse().unwrap()));
        // Wider than the mapped block: an IPv6 network, kept as written.
        assert_eq!(parse_source("::/0"), Some("::/0".parse().unwrap()));
        assert_eq!(parse_source("fd00::/8"), Some("fd00::/8".parse().unwrap()));
    }

    struct Hello {
        sni: Option<&'static str>,
        alpn: Vec<&'static [u8]>,
    }
    impl HelloFacts for Hello {
        fn sni(&self) -> Option<&str> {
            self.sni
        }
        fn alpn_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
            self.alpn.iter().copied()
        }
    }

    fn rule(field: &str, m: &str, pattern: &str) -> Rule {
        Rule { field: field.into(), match_: m.into(), pattern: Some(pattern.into()), ..Default::default() }
    }

    fn check(r: Rule, hello: Option<&Hello>, source: &str) -> bool {
        let compiled = CompiledRule::compile(&r, 1).expect("valid rule");
        compiled.matches(&ConnFacts { source: source.parse().unwrap(), hello })
    }

    fn h2() -> Hello {
        Hello { sni: Some("api.example.com"), alpn: vec![b"h2", b"http/1.1"] }
    }

    #[test]
    fn protocol_http2_matches_only_when_h2_offered() {
        assert!(check(rule("protocol", "is", "http/2.0"), Some(&h2()), "10.0.0.1"));
        let h1 = Hello { sni: None, alpn: vec![b"http/1.1"] };
        assert!(!check(rule("protocol", "is", "http/2.0"), Some(&h1), "10.0.0.1"));
        assert!(check(rule("protocol", "is", "http/1.1"), Some(&h1), "10.0.0.1"));
        assert!(!check(rule("protocol", "is", "http/2.0"), None, "10.0.0.1"));
    }

    #[test]
    fn protocol_tls_and_tcp_split_on_hello_presence() {
        assert!(check(rule("protocol", "is", "tls"), Some(&h2()), "10.0.0.1"));
        assert!(!check(rule("protocol", "is", "tcp"), Some(&h2()), "10.0.0.1"));
        assert!(check(rule("protocol", "is", "tcp"), None::<&Hello>, "10.0.0.1"));
        assert!(check(rule("protocol", "in", "tcp, http/2.0"), None::<&Hello>, "10.0.0.1"));
    }

    #[test]
    fn sni_matches_are_case_insensitive() {
        let hello = h2();
        for (m, p) in [
            ("is", "API.example.com"),
            ("in", "x.org,api.example.com"),
            ("contains", "EXAMPLE"),
            ("startswith", "api."),
            ("endswith", ".COM"),
            ("matches", "^api\\.[a-z]+\\.com$"),
        ] {
            assert!(check(rule("sni", m, p), Some(&hello), "10.0.0.1"), "{m} {p}");
        }
        assert!(check(rule("host", "exists", ""), Some(&hello), "10.0.0.1"));
        assert!(!check(rule("sni", "endswith", ".org"), Some(&hello), "10.0.0.1"));
        let anonymous = Hello { sni: None, alpn: vec![] };
        assert!(!check(rule("sni", "exists", ""), Some(&anonymous), "10.0.0.1"));
    }

    #[test]
    fn alpn_rules_look_at_every_offered_id() {
        assert!(check(rule("alpn", "is", "http/1.1"), Some(&h2()), "10.0.0.1"));
        assert!(check(rule("alpn", "startswith", "http/"), Some(&h2()), "10.0.0.1"));
        assert!(check(rule("alpn", "exists", ""), Some(&h2()), "10.0.0.1"));
        let none = Hello { sni: None, alpn: vec![] };
        assert!(!check(rule("alpn", "exists", ""), Some(&none), "10.0.0.1"));
    }

    #[test]
    fn source_rules_take_addresses_and_cidrs() {
        assert!(check(rule("source", "is", "10.0.0.0/8"), None::<&Hello>, "10.2.3.4"));
        assert!(check(rule("source", "is", "10.2.3.4"), None::<&Hello>, "10.2.3.4"));
        assert!(!check(rule("source", "is", "10.2.3.4"), None::<&Hello>, "10.2.3.5"));
        assert!(check(rule("source", "in", "192.0.2.0/24, 2001:db8::/32"), None::<&Hello>, "2001:db8::1"));
        assert!(check(rule("source", "is", "10.2.3.4"), None::<&Hello>, "::ffff:10.2.3.4"));
    }

    #[test]
    fn negate_inverts() {
        let mut r = rule("protocol", "is", "http/2.0");
        r.negate = true;
        assert!(!check(r, Some(&h2()), "10.0.0.1"));
    }

    #[test]
    fn invalid_rules_name_the_field() {
        let e = CompiledRule::compile(&rule("sni", "matches", "("), 7).unwrap_err();
        assert_eq!((e.id, e.field), (Some(7), "pattern"));
        let e = CompiledRule::compile(&rule("source", "contains", "10.0.0.1"), 7).unwrap_err();
        assert_eq!(e.field, "match");
        let e = CompiledRule::compile(&rule("cookie", "is", "x"), 7).unwrap_err();
        assert_eq!(e.field, "field");
        let e = CompiledRule::compile(&rule("protocol", "is", "quic"), 7).unwrap_err();
        assert_eq!(e.field, "pattern");
        let e = CompiledRule::compile(&rule("source", "in", "10.0.0.1, nope"), 7).unwrap_err();
        assert_eq!(e.field, "pattern");
        let mut r = rule("sni", "is", "");
        r.pattern = None;
        assert_eq!(CompiledRule::compile(&r, 7).unwrap_err().field, "pattern");
    }
}

#[cfg(test)]
mod props;

//! Property tests of the rule engine.
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
struct Hello {
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
}
impl HelloFacts for Hello {
    fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
    fn alpn_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.alpn.iter().map(Vec::as_slice)
    }
}

fn rule(field: &str, m: &str, pattern: &str, negate: bool) -> Rule {
    Rule { field: field.into(), match_: m.into(), pattern: Some(pattern.into()), negate, ..Default::default() }
}

fn eval(rule: &CompiledRule, source: IpAddr, hello: Option<&Hello>) -> bool {
    rule.matches(&ConnFacts { source, hello })
}

// Small alphabets, so that generated names, ids and addresses collide with generated
// patterns often enough for both outcomes of every rule to be exercised.
fn name() -> impl Strategy<Value = String> {
    "[abAB]{1,3}(\\.[abAB]{1,2}){0,2}"
}
fn alpn_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(b"h2".to_vec()), Just(b"http/1.1".to_vec()), "[a-c/]{1,3}".prop_map(String::into_bytes)]
}
fn alpn_pattern() -> impl Strategy<Value = String> {
    prop_oneof![Just("h2".to_string()), Just("http/1.1".to_string()), "[a-c/]{1,3}"]
}
/// Addresses near 10.0.0.0/29 and 2001:db8::/125, their v4-mapped forms, and anything at all.
fn source() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..8).prop_map(|h| IpAddr::V4(Ipv4Addr::new(10, 0, 0, h))),
        (0u8..8).prop_map(|h| IpAddr::V6(Ipv4Addr::new(10, 0, 0, h).to_ipv6_mapped())),
        (0u16..8).prop_map(|h| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, h))),
        any::<IpAddr>(),
    ]
}
fn source_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..8, 29u8..=32).prop_map(|(h, p)| format!("10.0.0.{h}/{p}")),
        (0u8..8).prop_map(|h| format!("10.0.0.{h}")),
        (0u16..8, 125u8..=128).prop_map(|(h, p)| format!("2001:db8::{h}/{p}")),
        (0u16..8).prop_map(|h| format!("2001:db8::{h}")),
    ]
}
fn hello() -> impl Strategy<Value = Option<Hello>> {
    proptest::option::of((proptest::option::of(name()), proptest::collection::vec(alpn_id(), 0..4)).prop_map(|(sni, alpn)| Hello { sni, alpn }))
}
fn list(item: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(item, 1..5)
}
/// A (field, match, pattern) that compiles, covering every field and match IPLB allows.
fn valid_rule() -> impl Strategy<Value = (String, String, String)> {
    let string_matches = || prop::sample::select(vec!["is", "contains", "startswith", "endswith", "exists"]);
    let protocols = || prop::sample::select(vec!["tls", "tcp", "http/2.0", "http/1.1", "h2", "SSL"]);
    prop_oneof![
        protocols().prop_map(|p| ("protocol".into(), "is".into(), p.into())),
        list(protocols().prop_map(String::from)).prop_map(|ps| ("protocol".into(), "in".into(), ps.join(","))),
        (prop::sample::select(vec!["sni", "host"]), string_matches(), name()).prop_map(|(f, m, p)| (f.into(), m.into(), p)),
        list(name()).prop_map(|ns| ("sni".into(), "in".into(), ns.join(", "))),
        Just(("sni".into(), "matches".into(), "^a+\\.b".into())),
        (string_matches(), alpn_pattern()).prop_map(|(m, p)| ("alpn".into(), m.into(), p)),
        list(alpn_pattern()).prop_map(|ps| ("alpn".into(), "in".into(), ps.join(","))),
        source_pattern().prop_map(|p| ("source".into(), "is".into(), p)),
        list(source_pattern()).prop_map(|ps| ("source".into(), "in".into(), ps.join(" , "))),
    ]
}

/// Flips the case of the letters picked by `mask` (cycled).
fn recase(s: &str, mask: &[bool]) -> String {
    s.chars().zip(mask.iter().cycle()).map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect()
}

proptest! {
    #[test]
    fn negate_inverts_every_rule_on_every_connection((field, m, pattern) in valid_rule(), source in source(), hello in hello()) {
        let plain = CompiledRule::compile(&rule(&field, &m, &pattern, false), 1).expect("valid_rule compiles");
        let negated = CompiledRule::compile(&rule(&field, &m, &pattern, true), 1).expect("valid_rule compiles");
        prop_assert_ne!(eval(&plain, source, hello.as_ref()), eval(&negated, source, hello.as_ref()));
    }

    #[test]
    fn sni_in_list_matches_iff_some_is_matches(items in list(name()), sni in proptest::option::of(name()), pick in any::<prop::sample::Index>(), use_pick in any::<bool>()) {
        // Half the time, the name is one of the items (case is free to differ).
        let sni = if use_pick { Some(items[pick.index(items.len())].to_ascii_uppercase()) } else { sni };
        let hello = Hello { sni, alpn: vec![] };
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let in_rule = CompiledRule::compile(&rule("sni", "in", &items.join(", "), false), 1).unwrap();
        let any_is = items.iter().any(|i| eval(&CompiledRule::compile(&rule("sni", "is", i, false), 1).unwrap(), source, Some(&hello)));
        prop_assert_eq!(eval(&in_rule, source, Some(&hello)), any_is);
    }

    #[test]
    fn alpn_in_list_matches_iff_some_is_matches(items in list(alpn_pattern()), hello in hello()) {
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let in_rule = CompiledRule::compile(&rule("alpn", "in", &items.join(","), false), 1).unwrap();
        let any_is = items.iter().any(|i| eval(&CompiledRule::compile(&rule("alpn", "is", i, false), 1).unwrap(), source, hello.as_ref()));
        prop_assert_eq!(eval(&in_rule, source, hello.as_ref()), any_is);
    }

    #[test]
    fn source_in_list_matches_iff_some_is_matches(items in list(source_pattern()), source in source()) {
        let in_rule = CompiledRule::compile(&rule("source", "in", &items.join(", "), false), 1).unwrap();
        let any_is = items.iter().any(|i| eval(&CompiledRule::compile(&rule("source", "is", i, false), 1).unwrap(), source, None));
        prop_assert_eq!(eval(&in_rule, source, None), any_is);
    }

    #[test]
    fn sni_matching_ignores_case(
        m in prop::sample::select(vec!["is", "contains", "startswith", "endswith"]),
        pattern in "[abAB.]{1,3}",
        name in "[abAB.]{1,8}",
        name_mask in proptest::collection::vec(any::<bool>(), 1..8),
        pattern_mask in proptest::collection::vec(any::<bool>(), 1..8),
    ) {
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let result = |pattern: &str, name: &str| {
            let compiled = CompiledRule::compile(&rule("sni", m, pattern, false), 1).unwrap();
            eval(&compiled, source, Some(&Hello { sni: Some(name.into()), alpn: vec![] }))
        };
        let base = result(&pattern.to_ascii_lowercase(), &name.to_ascii_lowercase());
        prop_assert_eq!(result(&pattern, &name), base);
        prop_assert_eq!(result(&pattern.to_ascii_uppercase(), &name.to_ascii_uppercase()), base);
        prop_assert_eq!(result(&recase(&pattern, &pattern_mask), &recase(&name, &name_mask)), base);
    }

    #[test]
    fn compiling_arbitrary_rules_never_panics(
        field in prop_oneof![prop::sample::select(FIELDS.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>()), ".{0,12}"],
        m in prop_oneof![prop::sample::select(FIELDS.iter().flat_map(|(_, ms)| ms.iter().map(|m| m.to_string())).collect::<Vec<_>>()), ".{0,12}"],
        pattern in proptest::option::of(".{0,40}"),
        sub_field in proptest::option::of(".{0,4}"),
        negate in any::<bool>(),
    ) {
        let r = Rule { field, match_: m, pattern, sub_field, negate, ..Default::default() };
        if let Err(e) = CompiledRule::compile(&r, 9) {
            prop_assert_eq!(e.id, Some(9), "error names the rule: {}", e.message);
        }
    }

    #[test]
    fn source_cidr_agrees_with_ipnet_contains(v4 in any::<bool>(), net_bits in any::<u128>(), prefix in 0u8..=128, host_bits in any::<u128>(), near in any::<bool>()) {
        let (net, addr) = if v4 {
            let prefix = prefix % 33;
            let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(net_bits as u32)), prefix).unwrap();
            // Near: the net's address with only host bits changed, so a fair share lands inside.
            let host_mask = u32::MAX.checked_shr(prefix.into()).unwrap_or(0);
            let bits = if near { (net_bits as u32 & !host_mask) | (host_bits as u32 & host_mask) } else { host_bits as u32 };
            (net, IpAddr::V4(Ipv4Addr::from(bits)))
        } else {
            let net = IpNet::new(IpAddr::V6(Ipv6Addr::from(net_bits)), prefix).unwrap();
            let host_mask = u128::MAX.checked_shr(prefix.into()).unwrap_or(0);
            let bits = if near { (net_bits & !host_mask) | (host_bits & host_mask) } else { host_bits };
            (net, IpAddr::V6(Ipv6Addr::from(bits)))
        };
        // v4-mapped sources are compared as IPv4 (see `canonical`); they get their own test below.
        prop_assume!(canonical(addr) == addr);
        let compiled = CompiledRule::compile(&rule("source", "is", &net.to_string(), false), 1).unwrap();
        prop_assert_eq!(eval(&compiled, addr, None), net.contains(&addr), "{} in {}", addr, net);
    }

    #[test]
    fn v4_mapped_source_matches_like_its_ipv4_form(net_bits in any::<u32>(), prefix in 0u8..=32, host in any::<u32>()) {
        let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(net_bits)), prefix).unwrap();
        let v4 = Ipv4Addr::from(host);
        let compiled = CompiledRule::compile(&rule("source", "is", &net.to_string(), false), 1).unwrap();
        prop_assert_eq!(eval(&compiled, IpAddr::V6(v4.to_ipv6_mapped()), None), net.contains(&IpAddr::V4(v4)));
    }
}

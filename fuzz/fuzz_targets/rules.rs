//! Rule compilation and evaluation on arbitrary rules and connection facts: errors are
//! fine, panics are not.
#![no_main]

use lb_core::{
    model::Rule,
    routing::{CompiledRule, ConnFacts, HelloFacts},
};
use libfuzzer_sys::fuzz_target;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    field: u8,
    matcher: u8,
    pattern: String,
    negate: bool,
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
    tls: bool,
    source: [u8; 16],
    v4: bool,
}

struct Facts {
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
}

impl HelloFacts for Facts {
    fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
    fn alpn_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.alpn.iter().map(Vec::as_slice)
    }
}

const FIELDS: &[&str] = &["protocol", "sni", "host", "alpn", "source", "cookie"];
const MATCHES: &[&str] = &["is", "in", "contains", "startswith", "endswith", "matches", "exists", "nope"];

fuzz_target!(|input: Input| {
    // Long patterns only make regex compilation slow; rule patterns are short in practice.
    if input.pattern.len() > 48 {
        return;
    }
    let rule = Rule {
        field: FIELDS[input.field as usize % FIELDS.len()].to_string(),
        match_: MATCHES[input.matcher as usize % MATCHES.len()].to_string(),
        pattern: Some(input.pattern),
        negate: input.negate,
        ..Default::default()
    };
    let Ok(compiled) = CompiledRule::compile(&rule, 1) else { return };
    let source = if input.v4 {
        std::net::IpAddr::from([input.source[0], input.source[1], input.source[2], input.source[3]])
    } else {
        std::net::IpAddr::from(input.source)
    };
    let facts = Facts { sni: input.sni, alpn: input.alpn };
    let hello = input.tls.then_some(&facts);
    let once = compiled.matches(&ConnFacts { source, hello });
    // Evaluation is pure: the same facts give the same answer.
    assert_eq!(once, compiled.matches(&ConnFacts { source, hello }));
});

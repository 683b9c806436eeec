//! The hello body: fixed fields, extensions kept, validation and error offsets.

use super::super::HelloError;
use super::support::*;

fn malformed(what: &'static str, offset: usize) -> HelloError {
    HelloError::Malformed { what, offset }
}

/// Hello offset of the first extension in a default builder.
fn first_ext() -> usize {
    Builder::default().block_offset() + 2
}

#[test]
fn hello_without_extensions_is_read() {
    let hello = complete(&Builder { extensions: None, ..Builder::default() }.stream());
    assert_eq!(hello.sni(), None);
    assert!(!hello.has_alpn());
    assert_eq!(hello.alpn().count(), 0);
    assert!(!hello.has_supported_versions());
    assert_eq!(hello.supported_versions().count(), 0);
}

#[test]
fn legacy_and_supported_versions_are_read() {
    let b = Builder { legacy_version: 0x0301, ..Builder::default() }.with(43, versions_ext(&[0x2a2a, 0x0304, 0x0303]));
    let hello = complete(&b.stream());
    assert_eq!(hello.legacy_version(), 0x0301);
    assert_eq!(hello.supported_versions().collect::<Vec<_>>(), [0x2a2a, 0x0304, 0x0303]);
}

#[test]
fn unknown_extensions_are_skipped() {
    let b = Builder::default().with(0x0a0a, vec![]).with(10, vec![0, 4, 0, 29, 0, 23]).with(0, sni_ext(b"skip.example")).with(0xfe0d, vec![9; 200]);
    assert_eq!(complete(&b.stream()).sni(), Some("skip.example"));
}

#[test]
fn zero_length_hello_is_malformed() {
    let stream = record(&handshake_of(&[]), &[100]);
    assert_eq!(error(&stream), malformed("legacy_version truncated", 4));
}

#[test]
fn truncated_extension_is_malformed() {
    // The block is consistent, but the extension inside claims 16 bytes and has 3.
    let b = Builder { raw_block: Some(vec![0, 7, 0, 21, 0, 16, 1, 2, 3]), ..Builder::default() };
    let err = error(&b.stream());
    assert_eq!(err, malformed("extension data truncated", first_ext() + 4));
    assert!(err.to_string().contains("extension data truncated at hello offset 85"), "{err}");
}

#[test]
fn truncated_extension_header_is_malformed() {
    let b = Builder { raw_block: Some(vec![0, 3, 0, 21, 0]), ..Builder::default() };
    assert_eq!(error(&b.stream()), malformed("extension data truncated", first_ext() + 2));
}

#[test]
fn extensions_block_longer_than_hello_is_malformed() {
    let b = Builder { raw_block: Some(vec![0, 9, 0, 21, 0, 0]), ..Builder::default() };
    assert_eq!(error(&b.stream()), malformed("extensions truncated", first_ext()));
}

#[test]
fn bytes_after_extensions_are_malformed() {
    let b = Builder { raw_block: Some(vec![0, 4, 0, 21, 0, 0, 0xff]), ..Builder::default() };
    assert_eq!(error(&b.stream()), malformed("bytes after extensions", first_ext() + 4));
}

#[test]
fn duplicate_extension_is_refused() {
    let b = Builder::default().with(16, alpn_ext(&[b"h2"])).with(16, alpn_ext(&[b"h2"]));
    let second = first_ext() + 4 + alpn_ext(&[b"h2"]).len();
    assert_eq!(error(&b.stream()), HelloError::DuplicateExtension { ext_type: 16, offset: second });
}

#[test]
fn duplicate_high_extension_is_refused() {
    let b = Builder::default().with(0xfe0d, vec![]).with(0xff01, vec![0]).with(0xfe0d, vec![]);
    assert!(matches!(error(&b.stream()), HelloError::DuplicateExtension { ext_type: 0xfe0d, .. }));
}

#[test]
fn thousands_of_distinct_extensions_are_read_and_a_late_duplicate_caught() {
    let mut b = Builder::default();
    for t in 0x0100..0x0100 + 8000u16 {
        b = b.with(t, vec![]);
    }
    let hello = complete(&record(&b.handshake(), &[16384]));
    assert_eq!(hello.sni(), None);
    let b = b.with(0x0100 + 7999, vec![]);
    assert!(matches!(error(&record(&b.handshake(), &[16384])), HelloError::DuplicateExtension { ext_type: 0x203f, .. }));
}

#[test]
fn session_id_over_32_bytes_is_malformed() {
    let b = Builder { session_id: vec![1; 33], ..Builder::default() };
    assert_eq!(error(&b.stream()), malformed("session_id longer than 32 bytes", 38));
}

#[test]
fn odd_or_empty_cipher_suites_are_malformed() {
    for suites in [vec![0x13], vec![], vec![0x13, 0x01, 0x13]] {
        let b = Builder { suites, ..Builder::default() };
        assert_eq!(error(&b.stream()), malformed("cipher_suites length not a positive even number", 71));
    }
}

#[test]
fn empty_compression_methods_are_malformed() {
    let b = Builder { compression: vec![], ..Builder::default() };
    assert_eq!(error(&b.stream()), malformed("empty compression_methods", 77));
}

#[test]
fn truncated_random_is_malformed() {
    let stream = record(&handshake_of(&[3, 3, 9, 9, 9]), &[100]);
    assert_eq!(error(&stream), malformed("random truncated", 6));
}

#[test]
fn empty_alpn_list_is_malformed() {
    let b = Builder::default().with(16, vec![0, 0]);
    assert_eq!(error(&b.stream()), malformed("empty ALPN list", first_ext() + 6));
}

#[test]
fn empty_alpn_id_is_malformed() {
    let b = Builder::default().with(16, alpn_ext(&[b"h2", b""]));
    assert_eq!(error(&b.stream()), malformed("empty ALPN id", first_ext() + 9));
}

#[test]
fn alpn_list_with_stray_bytes_is_malformed() {
    let mut data = alpn_ext(&[b"h2"]);
    data.push(0);
    let b = Builder::default().with(16, data);
    assert_eq!(error(&b.stream()), malformed("bytes after ALPN list", first_ext() + 9));
}

#[test]
fn long_alpn_ids_spill_to_the_heap_and_read_back() {
    let long = [b'x'; 255];
    let ids: Vec<&[u8]> = vec![&long, b"h2", &long[..100]];
    let hello = complete(&Builder::default().with(16, alpn_ext(&ids)).stream());
    assert!(!hello.data.is_inline());
    assert_eq!(alpn_ids(&hello), ids.iter().map(|i| i.to_vec()).collect::<Vec<_>>());
    assert!(hello.offers_alpn(b"h2"));
}

#[test]
fn odd_supported_versions_are_malformed() {
    for data in [vec![3, 3, 4, 3], vec![0], vec![4, 3, 4]] {
        let b = Builder::default().with(43, data);
        assert!(matches!(error(&b.stream()), HelloError::Malformed { .. }));
    }
}

#[test]
fn sni_is_lowercased() {
    let hello = complete(&Builder::default().with(0, sni_ext(b"WWW.Example.TEST")).stream());
    assert_eq!(hello.sni(), Some("www.example.test"));
}

#[test]
fn plausible_dns_names_are_accepted() {
    let max_label = "a".repeat(63);
    let longest = [&"b".repeat(61)[..]; 4].join("."); // 4 * 61 + 3 = 247 bytes
    let exactly_253 = format!("{longest}.abcde");
    assert_eq!(exactly_253.len(), 253);
    for name in ["x", "xn--bcher-kva.example", "_acme.a-b.example", &max_label, &exactly_253] {
        let hello = complete(&Builder::default().with(0, sni_ext(name.as_bytes())).stream());
        assert_eq!(hello.sni(), Some(name));
    }
}

#[test]
fn implausible_dns_names_are_refused() {
    let name_at = first_ext() + 9;
    let cases: [(&[u8], &str, usize); 8] = [
        (b"", "empty host_name", 0),
        (b"a\0b", "byte outside [A-Za-z0-9._-]", 1),
        ("b\u{fc}cher.de".as_bytes(), "byte outside [A-Za-z0-9._-]", 1),
        (b"a b", "byte outside [A-Za-z0-9._-]", 1),
        (b"example.com.", "trailing dot", 11),
        (b".example", "empty label", 0),
        (b"a..b", "empty label", 2),
        (&[b'a'; 64], "label longer than 63 bytes", 63),
    ];
    for (name, what, at) in cases {
        let err = error(&Builder::default().with(0, sni_ext(name)).stream());
        assert_eq!(err, HelloError::InvalidServerName { what, offset: name_at + at }, "{name:?}");
    }
    let long = [&"c".repeat(60)[..]; 5].join(".");
    let err = error(&Builder::default().with(0, sni_ext(long.as_bytes())).stream());
    assert!(matches!(err, HelloError::InvalidServerName { what: "host_name longer than 253 bytes", .. }));
}

#[test]
fn two_host_names_are_malformed() {
    let mut list = vec![0, 0, 1, b'a', 0, 0, 1, b'b'];
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.append(&mut list);
    let err = error(&Builder::default().with(0, data).stream());
    assert_eq!(err, malformed("second host_name in server_name", first_ext() + 10));
}

#[test]
fn server_name_of_unknown_type_only_gives_no_sni() {
    let data = vec![0, 5, 7, 0, 2, 0xff, 0xfe];
    let hello = complete(&Builder::default().with(0, data).stream());
    assert_eq!(hello.sni(), None);
}

#[test]
fn server_name_entries_after_an_unknown_type_are_not_read() {
    // Found by the rustls differential fuzzer: type 7 has no defined encoding, so the bytes
    // after it (here a length that overruns the list) belong to it and are never parsed.
    let data = vec![0, 3, 7, 0xff, 0xff];
    let hello = complete(&Builder::default().with(0, data).stream());
    assert_eq!(hello.sni(), None);
}

#[test]
fn host_name_before_an_unknown_type_is_kept() {
    let data = vec![0, 7, 0, 0, 1, b'a', 7, 0xff, 0xff];
    let hello = complete(&Builder::default().with(0, data).stream());
    assert_eq!(hello.sni(), Some("a"));
}

#[test]
fn empty_server_name_list_is_malformed() {
    let err = error(&Builder::default().with(0, vec![0, 0]).stream());
    assert_eq!(err, malformed("empty server_name list", first_ext() + 6));
}

#[test]
fn error_messages_say_what_and_where() {
    let err = error(&Builder::default().with(0, sni_ext(b"a\0b")).stream());
    assert_eq!(err.to_string(), "ClientHello server_name is not a DNS name: byte outside [A-Za-z0-9._-] at hello offset 91");
}

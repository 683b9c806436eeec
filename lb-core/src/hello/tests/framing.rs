//! Feeding, record framing and the NotTls / complete / error decisions.

use super::super::{HelloError, HelloReader, Progress, MAX_HELLO_LEN, MAX_RECORDS};
use super::support::*;

const H2_HTTP11: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn is_need_more(p: Result<Progress, HelloError>) -> bool {
    matches!(p, Ok(Progress::NeedMore))
}

fn is_not_tls(p: Result<Progress, HelloError>) -> bool {
    matches!(p, Ok(Progress::NotTls))
}

#[test]
fn sni_and_alpn_read_from_rustls_hello() {
    let stream = rustls_hello("backend.example.com", &H2_HTTP11, None);
    let hello = complete(&stream);
    assert_eq!(hello.sni(), Some("backend.example.com"));
    assert_eq!(alpn_ids(&hello), [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(hello.offers_alpn(b"h2"));
    assert!(hello.offers_alpn(b"http/1.1"));
    assert!(!hello.offers_alpn(b"http/1.0"));
    assert_eq!(hello.legacy_version(), 0x0303);
    assert!(hello.supported_versions().any(|v| v == 0x0304));
    assert_eq!(hello.records(), 1);
    assert_eq!(hello.wire_len(), stream.len());
    assert_eq!(hello.hello_len(), stream.len() - 5);
}

#[test]
fn chrome_fixture_is_read_in_one_feed() {
    let stream = chrome_hello();
    let hello = complete(&stream);
    assert_eq!(hello.sni(), Some("www.example.test"));
    assert_eq!(alpn_ids(&hello), [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(hello.records(), 1);
    assert_eq!(hello.wire_len(), stream.len());
    assert!(hello.supported_versions().any(|v| v == 0x0304));
    assert!(hello.data.is_inline(), "common hello fields stay inline");
}

#[test]
fn curl_openssl_fixture_is_read() {
    let hello = complete(&curl_hello());
    assert_eq!(hello.sni(), Some("www.example.test"));
    assert_eq!(alpn_ids(&hello), [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(hello.supported_versions().collect::<Vec<_>>(), [0x0304, 0x0303, 0x0302, 0x0301]);
}

#[test]
fn hello_split_one_byte_per_feed_gives_same_answer() {
    for stream in [chrome_hello(), curl_hello(), rustls_hello("a.example", &H2_HTTP11, None)] {
        let whole = format!("{:?}", HelloReader::new().feed(&stream));
        let bytewise = format!("{:?}", feed_in(&stream, &[1]));
        assert_eq!(whole, bytewise);
        assert!(whole.starts_with("Ok(Complete("), "{whole}");
    }
}

#[test]
fn chrome_hello_in_two_tcp_segments_is_read() {
    let stream = chrome_hello();
    let mut reader = HelloReader::new();
    assert!(is_need_more(reader.feed(&stream[..1448])));
    match reader.feed(&stream[1448..]) {
        Ok(Progress::Complete(hello)) => assert_eq!(hello.sni(), Some("www.example.test")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn alpn_in_third_record_is_read() {
    let padding = vec![0; 1100];
    let handshake = Builder::default().with(0, sni_ext(b"third.example")).with(21, padding).with(16, alpn_ext(&H2_HTTP11)).handshake();
    let alpn_at = handshake.len() - 18;
    assert_eq!(alpn_at / 512, 2, "ALPN starts in the third 512-byte record");
    let stream = record(&handshake, &[512]);
    for segments in [&[usize::MAX][..], &[1], &[7, 500, 3]] {
        let hello = match feed_in(&stream, segments) {
            Ok(Progress::Complete(hello)) => hello,
            other => panic!("{other:?}"),
        };
        assert_eq!(hello.records(), 3);
        assert_eq!(hello.sni(), Some("third.example"));
        assert_eq!(alpn_ids(&hello), [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(hello.wire_len(), stream.len());
    }
}

#[test]
fn rustls_hello_fragmented_by_max_fragment_size_is_read() {
    let stream = rustls_hello("frag.example.org", &H2_HTTP11, Some(64));
    let hello = complete(&stream);
    assert!(hello.records() > 3, "rustls fragmented into {} records", hello.records());
    assert_eq!(hello.sni(), Some("frag.example.org"));
    assert!(hello.offers_alpn(b"http/1.1"));
}

#[test]
fn handshake_header_split_across_records_is_read() {
    let handshake = Builder::default().with(0, sni_ext(b"split.example")).handshake();
    let stream = record(&handshake, &[1, 2, 1, 5, 1000]);
    assert_eq!(complete(&stream).sni(), Some("split.example"));
}

#[test]
fn non_tls_first_byte_is_not_tls() {
    assert!(is_not_tls(HelloReader::new().feed(b"G")));
    assert!(is_not_tls(HelloReader::new().feed(b"GET / HTTP/1.1\r\n")));
    assert!(is_not_tls(HelloReader::new().feed(b"SSH-2.0-OpenSSH_9.2\r\n")));
    assert!(is_not_tls(HelloReader::new().feed(&[0x15, 3, 3, 0, 2, 2, 40])), "alert first");
}

#[test]
fn sslv2_compatible_hello_is_not_tls() {
    assert!(is_not_tls(HelloReader::new().feed(&[0x80, 0x2e, 0x01, 0x03, 0x01])));
}

#[test]
fn wrong_record_major_version_is_not_tls_on_second_byte() {
    let mut reader = HelloReader::new();
    assert!(is_need_more(reader.feed(&[0x16])));
    assert!(is_not_tls(reader.feed(&[0x47])));
}

#[test]
fn zero_length_first_record_is_not_tls() {
    let mut reader = HelloReader::new();
    assert!(is_need_more(reader.feed(&[22, 3, 1, 0])));
    assert!(is_not_tls(reader.feed(&[0])));
}

#[test]
fn not_tls_is_sticky() {
    let mut reader = HelloReader::new();
    assert!(is_not_tls(reader.feed(b"x")));
    assert!(is_not_tls(reader.feed(&chrome_hello())));
}

#[test]
fn empty_feed_needs_more() {
    let mut reader = HelloReader::new();
    assert!(is_need_more(reader.feed(&[])));
    assert_eq!(reader.bytes_read(), 0);
}

#[test]
fn hello_over_64k_is_refused() {
    let len = MAX_HELLO_LEN + 1;
    let mut reader = HelloReader::new();
    // Record header and handshake header only: the length field is enough to refuse.
    let head = [22, 3, 1, 0x40, 0x00, 1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    assert_eq!(reader.feed(&head).unwrap_err(), HelloError::TooLarge { len, max: MAX_HELLO_LEN });
}

#[test]
fn hello_of_exactly_64k_is_read() {
    let base = Builder::default().with(0, sni_ext(b"big.example")).body().len();
    let padding = vec![0; MAX_HELLO_LEN - base - 4];
    let builder = Builder::default().with(0, sni_ext(b"big.example")).with(21, padding);
    let handshake = builder.handshake();
    assert_eq!(handshake.len(), MAX_HELLO_LEN + 4);
    let stream = record(&handshake, &[16384]);
    let hello = complete(&stream);
    assert_eq!(hello.sni(), Some("big.example"));
    assert_eq!(hello.records(), 5);
    let whole = format!("{:?}", HelloReader::new().feed(&stream));
    assert_eq!(format!("{:?}", feed_in(&stream, &[1])), whole);
}

#[test]
fn hello_in_too_many_records_is_refused() {
    let stream = record(&unrecord(&chrome_hello()), &[1]);
    let limit = 6 * MAX_RECORDS; // each record: 5-byte header, 1 byte of payload
    let err = HelloError::TooManyRecords { max: MAX_RECORDS, offset: limit };
    assert_eq!(HelloReader::new().feed(&stream).unwrap_err(), err);
    assert_eq!(feed_in(&stream, &[1]).unwrap_err(), err);
    // The same hello in 512-byte records is fine.
    assert!(matches!(feed_in(&record(&unrecord(&chrome_hello()), &[512]), &[1]), Ok(Progress::Complete(_))));
}

#[test]
fn smaller_limit_is_honoured() {
    let stream = chrome_hello();
    let err = HelloReader::with_max_len(1024).feed(&stream).unwrap_err();
    assert_eq!(err, HelloError::TooLarge { len: stream.len() - 9, max: 1024 });
}

#[test]
fn oversized_record_is_refused() {
    assert!(is_need_more(HelloReader::new().feed(&[22, 3, 1, 0x41, 0x00])), "16640 is allowed");
    let err = HelloReader::new().feed(&[22, 3, 1, 0x41, 0x01]).unwrap_err();
    assert_eq!(err, HelloError::RecordTooLarge { len: 16641, max: 16640, offset: 0 });
}

/// The first 300 bytes of the Chrome hello's handshake, framed as a first record.
fn chrome_first_part() -> Vec<u8> {
    record(&unrecord(&chrome_hello())[..300], &[300])
}

#[test]
fn alert_record_before_hello_completes_is_refused() {
    let mut stream = chrome_first_part();
    stream.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
    let err = error(&stream);
    assert_eq!(err, HelloError::UnexpectedRecordType { content_type: 21, offset: 305 });
    assert!(err.to_string().contains("stream offset 305"), "{err}");
}

#[test]
fn change_cipher_spec_before_hello_completes_is_refused() {
    let mut stream = chrome_first_part();
    stream.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    assert!(matches!(error(&stream), HelloError::UnexpectedRecordType { content_type: 20, .. }));
}

#[test]
fn empty_record_mid_hello_is_refused() {
    let mut stream = chrome_first_part();
    stream.extend_from_slice(&[22, 3, 3, 0, 0]);
    assert_eq!(error(&stream), HelloError::EmptyRecord { offset: 305 });
}

#[test]
fn bad_record_version_mid_hello_is_refused() {
    let mut stream = chrome_first_part();
    stream.extend_from_slice(&[22, 2, 0, 0, 5]);
    assert_eq!(error(&stream), HelloError::BadRecordVersion { version: 0x0200, offset: 305 });
}

#[test]
fn handshake_other_than_client_hello_is_refused() {
    let mut reader = HelloReader::new();
    assert!(is_need_more(reader.feed(&[22, 3, 3, 0, 60])));
    assert_eq!(reader.feed(&[2]).unwrap_err(), HelloError::NotClientHello { msg_type: 2 });
}

#[test]
fn bytes_after_the_hello_are_not_read() {
    let mut stream = chrome_hello();
    let hello_end = stream.len();
    stream.extend_from_slice(&[23, 3, 3, 0, 3, 1, 2, 3]);
    assert_eq!(complete(&stream).wire_len(), hello_end);

    // Same when the hello ends inside a record that carries more handshake bytes.
    let mut handshake = unrecord(&chrome_hello());
    let hello_len = handshake.len();
    handshake.extend_from_slice(&[20, 0, 0, 0]);
    let stream = record(&handshake, &[16384]);
    let hello = complete(&stream);
    assert_eq!((hello.hello_len(), hello.wire_len()), (hello_len, hello_len + 5));
}

#[test]
fn feed_after_complete_is_refused() {
    let mut reader = HelloReader::new();
    assert!(matches!(reader.feed(&chrome_hello()), Ok(Progress::Complete(_))));
    assert_eq!(reader.feed(b"more").unwrap_err(), HelloError::AlreadyComplete);
}

#[test]
fn error_is_sticky() {
    let mut reader = HelloReader::new();
    let first = reader.feed(&[22, 3, 3, 0, 9, 2]).unwrap_err();
    assert_eq!(reader.feed(&chrome_hello()).unwrap_err(), first);
}

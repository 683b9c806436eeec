//! Properties: no input panics, and the answer never depends on how bytes are split into
//! TCP segments or TLS records.

use proptest::prelude::*;

use super::super::{HelloReader, Progress};
use super::support::*;

/// The outcome of reading `stream` in one feed, as comparable text.
fn one_shot(stream: &[u8]) -> String {
    format!("{:?}", HelloReader::new().feed(stream))
}

fn segment_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..700, 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_and_split_gives_same_answer(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        sizes in segment_sizes(),
    ) {
        prop_assert_eq!(one_shot(&bytes), format!("{:?}", feed_in(&bytes, &sizes)));
    }

    #[test]
    fn arbitrary_hello_bodies_never_panic_and_split_gives_same_answer(
        body in prop::collection::vec(any::<u8>(), 0..1024),
        records in segment_sizes(),
        sizes in segment_sizes(),
    ) {
        let stream = record(&handshake_of(&body), &records);
        prop_assert_eq!(one_shot(&stream), format!("{:?}", feed_in(&stream, &sizes)));
    }

    #[test]
    fn mutated_chrome_hello_never_panics_and_split_gives_same_answer(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        sizes in segment_sizes(),
    ) {
        let mut stream = chrome_hello();
        for (at, byte) in edits {
            let i = at.index(stream.len());
            stream[i] = byte;
        }
        stream.truncate(cut.index(stream.len()) + 1);
        prop_assert_eq!(one_shot(&stream), format!("{:?}", feed_in(&stream, &sizes)));
    }
}

fn dns_name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z][a-z0-9]{0,15}){0,4}"
}

fn alpn_list() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn rustls_hello_resplit_and_rerecorded_gives_configured_sni_and_alpn(
        sni in dns_name(),
        alpn in alpn_list(),
        records in prop::collection::vec(1usize..600, 1..6),
        sizes in segment_sizes(),
    ) {
        let ids: Vec<&[u8]> = alpn.iter().map(Vec::as_slice).collect();
        let handshake = unrecord(&rustls_hello(&sni, &ids, None));
        let stream = record(&handshake, &records);
        let hello = match feed_in(&stream, &sizes) {
            Ok(Progress::Complete(hello)) => hello,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(hello.sni(), Some(sni.as_str()));
        prop_assert_eq!(alpn_ids(&hello), alpn.clone());
        for id in &alpn {
            prop_assert!(hello.offers_alpn(id));
        }
        prop_assert_eq!(hello.hello_len(), handshake.len());
        prop_assert_eq!(hello.wire_len(), stream.len());
        prop_assert_eq!(format!("{hello:?}"), format!("{:?}", complete(&stream)));
    }
}

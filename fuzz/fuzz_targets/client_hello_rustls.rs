//! Differential: whenever rustls's server-side Acceptor accepts a ClientHello, our reader
//! reports the same SNI and the same ALPN list. A disagreement is a bug in one of us.
#![no_main]

use lb_core::hello::{HelloReader, Progress};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut input: &[u8] = data;
    if acceptor.read_tls(&mut input).is_err() {
        return;
    }
    let Ok(Some(accepted)) = acceptor.accept() else { return };
    let hello = accepted.client_hello();
    let their_sni = hello.server_name().map(|s| s.to_ascii_lowercase());
    let their_alpn: Option<Vec<Vec<u8>>> = hello.alpn().map(|ids| ids.map(<[u8]>::to_vec).collect());

    let mut reader = HelloReader::new();
    match reader.feed(data) {
        Ok(Progress::Complete(ours)) => {
            assert_eq!(ours.sni().map(str::to_string), their_sni, "SNI differs");
            let our_alpn: Vec<Vec<u8>> = ours.alpn().map(<[u8]>::to_vec).collect();
            assert_eq!(our_alpn, their_alpn.unwrap_or_default(), "ALPN differs");
        }
        other => panic!("rustls accepted a hello that our reader answered {other:?}"),
    }
});

//! The ClientHello reader fed whole and in arbitrary splits: it never panics and gives the
//! same answer however the bytes are split.
#![no_main]

use lb_core::hello::{HelloReader, Progress};
use libfuzzer_sys::fuzz_target;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    bytes: Vec<u8>,
    /// Split points, as lengths of consecutive feeds (0 is skipped).
    splits: Vec<u8>,
}

fn summary(result: Result<Progress, lb_core::hello::HelloError>) -> String {
    match result {
        Ok(Progress::Complete(hello)) => format!("complete {:?} {:?}", hello.sni(), hello.alpn().collect::<Vec<_>>()),
        Ok(Progress::NotTls) => "not tls".into(),
        Ok(Progress::NeedMore) => "need more".into(),
        // The variant, not the offsets: a split may notice the same fault at another byte.
        Err(e) => format!("error {}", format!("{e:?}").split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default()),
    }
}

fuzz_target!(|input: Input| {
    let whole = {
        let mut reader = HelloReader::new();
        summary(reader.feed(&input.bytes))
    };
    let mut reader = HelloReader::new();
    let mut rest: &[u8] = &input.bytes;
    let mut last = None;
    for &len in input.splits.iter().chain(std::iter::repeat(&255u8)) {
        if rest.is_empty() {
            break;
        }
        let n = (len as usize).max(1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let result = reader.feed(chunk);
        let decided = !matches!(result, Ok(Progress::NeedMore));
        last = Some(summary(result));
        if decided {
            break;
        }
    }
    if let Some(split) = last {
        let whole_kind = whole.split(' ').next();
        let split_kind = split.split(' ').next();
        assert_eq!(whole_kind, split_kind, "whole: {whole} / split: {split}");
        if whole.starts_with("complete") {
            assert_eq!(whole, split);
        }
    }
});

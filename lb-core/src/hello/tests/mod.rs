//! Tests of the ClientHello reader; inputs come from `support`.

mod fields;
mod framing;
mod props;
mod support;

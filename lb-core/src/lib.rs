//! lb-core: the pure logic of a TLS-aware L4 load balancer, kept apart from the daemon
//! (`lb-user`) so that it can be unit- and property-tested without root, sockets, an async
//! runtime or the kernel programs, and so that the CLI (`lbctl`) can share the model without
//! linking the daemon.
//!
//! Nothing here does I/O: parsers take byte slices, the balancer reads the live state of its
//! backends through a trait the daemon implements, and errors are typed values.
//!
//! - [`model`]: the configuration objects of the API (IPLB TCP service), serde types.
//! - [`error`]: the configuration error naming the object, id and field at fault.
//! - [`routing`]: route rules compiled once and matched per connection.
//! - [`balance`]: choosing a farm's server (round robin, least connections, first, Maglev,
//!   source stickiness) from neutral backends.
//! - [`hello`]: the sans-io TLS ClientHello reader.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 encoding and parsing.
//! - [`probe`]: the catalogue of health-probe types and their validation.
//! - [`snapshot`]: a whole configuration checked and compiled, without run-time state.
//! - [`splice`]: the sequence/timestamp arithmetic that joins two TCP connections.
//! - [`validate`]: checking one written object or an imported file, as a refresh would.
#![warn(missing_docs)]
pub mod balance;
pub mod error;
pub mod hello;
pub mod model;
pub mod probe;
pub mod proxy_protocol;
pub mod routing;
pub mod snapshot;
pub mod splice;
pub mod validate;

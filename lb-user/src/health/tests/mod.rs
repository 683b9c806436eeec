//! Probes against real servers on 127.0.0.1, and the checker against real snapshots.
mod checker;
mod databases;
mod http;
mod mail_and_oco;
mod servers;
mod spec;
mod tcp;
mod tls;

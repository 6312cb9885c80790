//! rend: a memcached proxy in front of a local memcached (L1), and the
//! library its load and verification tools share.
//!
//! Where a request goes, top to bottom:
//! - [`server`] accepts connections, sniffs the protocol from the first byte
//!   and runs one loop per connection ([`server::conn`]);
//! - [`protocol`] decodes requests ([`protocol::text`], [`protocol::binary`])
//!   into one neutral [`protocol::Request`] and encodes the
//!   [`protocol::Response`];
//! - [`orca`] is the policy that decides which tier answers
//!   ([`orca::L1Only`]);
//! - [`backend`] holds the tiers: [`backend::memcached`], the pooled binary
//!   client of memcached, [`backend::admin`], the text connection that
//!   carries memcached's admin commands, and [`backend::embedded`], the
//!   memcached rend starts when it is given none.
//!
//! [`config`] is the command line, [`app`] wires them together and
//! [`metrics`] counts what happens.

pub mod app;
pub mod backend;
pub mod config;
pub mod metrics;
pub mod net;
pub mod orca;
pub mod protocol;
pub mod server;
pub mod tools;

/// proptest's configuration for the unit tests: the seeds of failures it
/// finds are kept in `fixtures/proptest-regressions/{file}` (cargo runs tests
/// from the crate root) and replayed first on every run.
#[cfg(test)]
pub(crate) fn proptest_config(file: &'static str) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(file),
        )),
        ..proptest::test_runner::Config::default()
    }
}

//! Orca unit tests with scripted fake backends: one per path of DESIGN §3's
//! table, failure branches included.

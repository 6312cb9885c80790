//! libmemcached's protocol conformance suite (Debian's memccapable) against
//! rend. It must report all 54 tests passed; a skip or a failure fails here.

mod common;

use common::{assert_all_pass, memccapable, Memcached, Rend};

#[test]
fn memccapable_passes_against_l1_only() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &[]);
    assert_all_pass(&memccapable(&rend));
}

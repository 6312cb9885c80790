//! Ketama consistent hashing: which of several servers a key goes to when
//! the tools are given more than one `--server`.
//!
//! This is the continuum twemproxy (`distribution: ketama`, `hash: md5`) and
//! libmemcached's weighted-ketama mode build, with equal weights: for each
//! server, MD5 of `"{name}-{i}"` for i in 0..40, four little-endian 32-bit
//! points per digest, so 160 points per server; a key's MD5 gives one point
//! the same way and the key goes to the first server point at or after it,
//! wrapping around. Using the same ring as those tools means a run through
//! rend and a run spread directly over memcacheds put a key on the same
//! server, so results can be compared.
//!
//! The name is used verbatim. Note that twemproxy and libmemcached hash a
//! server on the default port 11211 as just `host` (no `:11211`); callers
//! wanting that exact ring pass names through [`point_name`] first.

use md5::{Digest, Md5};

/// Digests per server; each gives [`POINTS_PER_DIGEST`] points.
const DIGESTS_PER_SERVER: u32 = 40;
const POINTS_PER_DIGEST: usize = 4;
/// 160, libmemcached's `MEMCACHED_POINTS_PER_SERVER_KETAMA`.
pub const POINTS_PER_SERVER: usize = DIGESTS_PER_SERVER as usize * POINTS_PER_DIGEST;

/// The `h`th little-endian 32-bit word of an MD5 digest, as ketama reads it.
fn point(d: &[u8; 16], h: usize) -> u32 {
    u32::from_le_bytes([d[4 * h], d[4 * h + 1], d[4 * h + 2], d[4 * h + 3]])
}

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// The key hash: the first point of the key's MD5 (libmemcached's and
/// twemproxy's `md5` key hash).
pub fn key_hash(key: &[u8]) -> u32 {
    point(&md5(key), 0)
}

/// The name twemproxy and libmemcached hash for a `host:port` server: the
/// address without `:11211` when the port is memcached's default, the
/// address unchanged otherwise (including `unix:` paths).
pub fn point_name(server: &str) -> &str {
    match server.strip_suffix(":11211") {
        // "unix:/path:11211" is a path, not a port, and an empty host is not
        // a host: leave both alone.
        Some(host) if !host.is_empty() && !server.starts_with("unix:") => host,
        _ => server,
    }
}

/// The ring of server points.
#[derive(Debug, Clone)]
pub struct Continuum {
    /// (point, server index), sorted by point then server index.
    points: Vec<(u32, usize)>,
    servers: usize,
}

impl Continuum {
    /// Builds the ring for `servers` (`host:port` or `unix:/path`), each
    /// name hashed verbatim. With no servers every key maps to 0, so callers
    /// that always have at least one server need no special case.
    pub fn new(servers: &[String]) -> Continuum {
        let mut points = Vec::with_capacity(servers.len() * POINTS_PER_SERVER);
        for (idx, name) in servers.iter().enumerate() {
            for i in 0..DIGESTS_PER_SERVER {
                let d = md5(format!("{name}-{i}").as_bytes());
                for h in 0..POINTS_PER_DIGEST {
                    points.push((point(&d, h), idx));
                }
            }
        }
        // Sorting the pair breaks ties between equal points by server index,
        // so the ring does not depend on the sort algorithm (twemproxy's
        // qsort leaves such ties unspecified; they are vanishingly rare).
        points.sort_unstable();
        Continuum {
            points,
            servers: servers.len(),
        }
    }

    /// Number of servers on the ring.
    pub fn len(&self) -> usize {
        self.servers
    }

    pub fn is_empty(&self) -> bool {
        self.servers == 0
    }

    /// Index (into the list given to [`Continuum::new`]) of the server for
    /// `key`.
    pub fn server_for(&self, key: &[u8]) -> usize {
        if self.servers <= 1 {
            return 0;
        }
        let hash = key_hash(key);
        // First point >= hash; past the last point wraps to the first.
        let i = self.points.partition_point(|&(p, _)| p < hash);
        self.points
            .get(i)
            .or_else(|| self.points.first())
            .map_or(0, |&(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const THREE: [&str; 3] = ["127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"];

    #[test]
    fn one_server_takes_everything() {
        let c = Continuum::new(&names(&["127.0.0.1:11211"]));
        for i in 0..100 {
            assert_eq!(c.server_for(format!("k{i}").as_bytes()), 0);
        }
        assert_eq!(Continuum::new(&[]).server_for(b"x"), 0);
        assert!(Continuum::new(&[]).is_empty());
    }

    #[test]
    fn ring_shape() {
        let c = Continuum::new(&names(&THREE));
        assert_eq!(c.len(), 3);
        assert_eq!(c.points.len(), 3 * POINTS_PER_SERVER);
        assert!(c.points.windows(2).all(|w| w[0] <= w[1]));
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e; first LE word 0xd98c1dd4.
        assert_eq!(key_hash(b""), 0xd98c_1dd4);
    }

    #[test]
    fn keys_spread_over_servers() {
        let c = Continuum::new(&names(&THREE));
        let mut counts = [0u32; 3];
        for i in 0..10_000 {
            counts[c.server_for(format!("key:{i:08}").as_bytes())] += 1;
        }
        for n in counts {
            assert!((2000..=4700).contains(&n), "{counts:?}");
        }
    }

    #[test]
    fn same_key_same_server_and_few_move() {
        let c3 = Continuum::new(&names(&THREE));
        let again = Continuum::new(&names(&THREE));
        let mut four = names(&THREE);
        four.push("127.0.0.1:11214".to_string());
        let c4 = Continuum::new(&four);
        let n = 10_000;
        let mut moved = 0;
        for i in 0..n {
            let k = format!("key:{i:08}");
            let s = c3.server_for(k.as_bytes());
            assert_eq!(s, c3.server_for(k.as_bytes()));
            assert_eq!(s, again.server_for(k.as_bytes()));
            let s4 = c4.server_for(k.as_bytes());
            if s4 != s {
                // Consistent hashing: a key only ever moves to the new server.
                assert_eq!(s4, 3, "{k} moved from {s} to {s4}");
                moved += 1;
            }
        }
        // Ideally a quarter of the keys move.
        assert!(moved < n * 4 / 10, "{moved} of {n} keys moved");
        assert!(moved > n / 10, "{moved} of {n} keys moved");
    }

    // Expected pairs computed independently of this code with Python's
    // hashlib (same algorithm: MD5 of "{name}-{i}" for i in 0..40, four
    // little-endian words per digest, sort by (point, server); key hash = first
    // little-endian word of MD5(key); first point >= hash, wrapping):
    //
    // python3 -c '
    // import hashlib,struct,bisect
    // def ring(S):
    //  return sorted((p,s) for s,n in enumerate(S) for i in range(40)
    //   for p in struct.unpack("<4I",hashlib.md5(f"{n}-{i}".encode()).digest()))
    // def pick(r,k):
    //  h=struct.unpack("<I",hashlib.md5(k.encode()).digest()[:4])[0]
    //  i=bisect.bisect_left(r,(h,-1)); return r[i%len(r)][1]
    // S=["127.0.0.1:11211","127.0.0.1:11212","127.0.0.1:11213"]
    // K=["foo","bar","baz","hello","memcached","key:00000000","key:00000001",
    //  "key:00000002","key:00000003","key:00000004","a","rend"]
    // r=ring(S); print([(k,pick(r,k)) for k in K])
    // r=ring(["127.0.0.1"]+S[1:]); print([(k,pick(r,k)) for k in K])'
    //
    // The first line is the ring with names verbatim, the second the ring
    // twemproxy and libmemcached build for the same servers (port 11211
    // dropped from the name, see `point_name`).
    const KEYS: [&str; 12] = [
        "foo",
        "bar",
        "baz",
        "hello",
        "memcached",
        "key:00000000",
        "key:00000001",
        "key:00000002",
        "key:00000003",
        "key:00000004",
        "a",
        "rend",
    ];
    const PINNED_VERBATIM: [usize; 12] = [2, 1, 0, 0, 2, 1, 2, 2, 0, 0, 1, 2];
    const PINNED_POINT_NAMES: [usize; 12] = [0, 1, 1, 0, 2, 0, 0, 2, 0, 1, 1, 0];

    #[test]
    fn pinned_pairs_verbatim_names() {
        let c = Continuum::new(&names(&THREE));
        for (k, s) in KEYS.iter().zip(PINNED_VERBATIM) {
            assert_eq!(c.server_for(k.as_bytes()), s, "key {k}");
        }
    }

    #[test]
    fn pinned_pairs_twemproxy_names() {
        let servers: Vec<String> = THREE.iter().map(|s| point_name(s).to_string()).collect();
        assert_eq!(servers[0], "127.0.0.1");
        let c = Continuum::new(&servers);
        for (k, s) in KEYS.iter().zip(PINNED_POINT_NAMES) {
            assert_eq!(c.server_for(k.as_bytes()), s, "key {k}");
        }
    }

    #[test]
    fn point_name_drops_default_port_only() {
        assert_eq!(point_name("127.0.0.1:11211"), "127.0.0.1");
        assert_eq!(point_name("127.0.0.1:11212"), "127.0.0.1:11212");
        assert_eq!(point_name("cache.local:11211"), "cache.local");
        assert_eq!(point_name("unix:/tmp/mc.sock"), "unix:/tmp/mc.sock");
        assert_eq!(point_name("unix:/tmp/a:11211"), "unix:/tmp/a:11211");
        assert_eq!(point_name(":11211"), ":11211");
        assert_eq!(point_name("127.0.0.1:111211"), "127.0.0.1:111211");
    }
}

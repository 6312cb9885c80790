//! The workload model's unit tests.

use std::collections::HashMap;

use rand::Rng;

use super::*;

#[test]
fn key_dist_parses() {
    assert_eq!("uniform".parse::<KeyDist>(), Ok(KeyDist::Uniform));
    assert_eq!("sequential".parse::<KeyDist>(), Ok(KeyDist::Sequential));
    assert_eq!("zipf:0.99".parse::<KeyDist>(), Ok(KeyDist::Zipf(0.99)));
    assert_eq!("zipf:1.2".parse::<KeyDist>(), Ok(KeyDist::Zipf(1.2)));
    for bad in [
        "", "zipf", "zipf:", "zipf:0", "zipf:-1", "zipf:nan", "zipf:inf", "zipf:x", "normal",
    ] {
        let e = bad.parse::<KeyDist>().unwrap_err();
        assert!(e.contains("uniform") && e.contains("zipf:S"), "{bad}: {e}");
    }
    // Display round-trips.
    let d: KeyDist = "zipf:0.99".parse().unwrap();
    assert_eq!(d.to_string().parse::<KeyDist>(), Ok(d));
}

#[test]
fn keygen_rejects_bad_shapes() {
    assert!(KeyGen::new(0, KeyDist::Uniform, 10).is_err());
    assert!(KeyGen::new(10, KeyDist::Uniform, 0).is_err());
    assert!(KeyGen::new(10, KeyDist::Uniform, 251).is_err());
    // 1000 keys need 3 digits (indices 0..=999).
    assert!(KeyGen::new(1000, KeyDist::Uniform, 2).is_err());
    assert!(KeyGen::new(1000, KeyDist::Uniform, 3).is_ok());
    assert!(KeyGen::new(1001, KeyDist::Uniform, 3).is_err());
    assert!(KeyGen::new(u64::MAX, KeyDist::Uniform, 20).is_ok());
    assert!(KeyGen::new(u64::MAX, KeyDist::Uniform, 19).is_err());
}

#[test]
fn keys_are_fixed_length_printable_and_unique() {
    for (space, len) in [
        (1000u64, 3usize),
        (1000, 5),
        (1000, 7),
        (1000, 16),
        (7, 250),
    ] {
        let g = KeyGen::new(space, KeyDist::Uniform, len).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..space {
            let k = g.key(i);
            assert_eq!(k.len(), len);
            assert!(k.iter().all(|b| b.is_ascii_graphic()), "{k:?}");
            assert!(seen.insert(k));
        }
        // Out-of-range indices still give a well-formed key.
        assert_eq!(g.key(u64::MAX).len(), len);
    }
    let g = KeyGen::new(1000, KeyDist::Uniform, 10).unwrap();
    assert_eq!(&g.key(42)[..], b"key:000042");
    let g = KeyGen::new(1000, KeyDist::Uniform, 5).unwrap();
    assert_eq!(&g.key(42)[..], b"00042");
    let g = KeyGen::new(u64::MAX, KeyDist::Uniform, 24).unwrap();
    assert_eq!(&g.key(u64::MAX - 1)[..], b"key:18446744073709551614");
}

fn sequence(dist: KeyDist, seed: u64, n: usize) -> Vec<u64> {
    let mut g = KeyGen::new(1000, dist, 16).unwrap();
    let mut rng = worker_rng(seed, 0);
    (0..n).map(|_| g.next_index(&mut rng)).collect()
}

#[test]
fn same_seed_same_sequence() {
    for dist in [KeyDist::Uniform, KeyDist::Zipf(0.99), KeyDist::Zipf(1.2)] {
        let a = sequence(dist, 7, 1000);
        assert_eq!(a, sequence(dist, 7, 1000));
        assert_ne!(a, sequence(dist, 8, 1000));
        assert!(a.iter().all(|&i| i < 1000));
    }
    // Workers of one seed get different streams; the same worker again
    // gets the same one.
    let mut a = worker_rng(1, 0);
    let mut b = worker_rng(1, 1);
    let mut a2 = worker_rng(1, 0);
    let va: Vec<u64> = (0..8).map(|_| a.gen()).collect();
    let vb: Vec<u64> = (0..8).map(|_| b.gen()).collect();
    let va2: Vec<u64> = (0..8).map(|_| a2.gen()).collect();
    assert_ne!(va, vb);
    assert_eq!(va, va2);
}

fn top10_share(dist: KeyDist) -> f64 {
    let mut g = KeyGen::new(1000, dist, 16).unwrap();
    let mut rng = worker_rng(42, 0);
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let n = 100_000;
    for _ in 0..n {
        *counts.entry(g.next_index(&mut rng)).or_default() += 1;
    }
    let mut c: Vec<u64> = counts.into_values().collect();
    c.sort_unstable_by(|a, b| b.cmp(a));
    c.iter().take(10).sum::<u64>() as f64 / n as f64
}

#[test]
fn zipf_is_skewed_uniform_is_not() {
    let z = top10_share(KeyDist::Zipf(1.0));
    let u = top10_share(KeyDist::Uniform);
    // Zipf(1) over 1000 keys: H(10)/H(1000) ≈ 2.93/7.49 ≈ 39%.
    assert!(z > 0.30, "zipf top-10 share {z}");
    // Uniform: 10/1000 = 1% plus noise.
    assert!(u < 0.03, "uniform top-10 share {u}");
    // And the hottest zipf key is index 0 (rank 1).
    let mut g = KeyGen::new(1000, KeyDist::Zipf(1.0), 16).unwrap();
    let mut rng = worker_rng(3, 0);
    let zeros = (0..10_000).filter(|_| g.next_index(&mut rng) == 0).count();
    assert!(zeros > 1000, "index 0 drawn {zeros} times of 10000");
}

#[test]
fn sequential_wraps_per_generator() {
    let mut g = KeyGen::new(3, KeyDist::Sequential, 8).unwrap();
    let mut rng = worker_rng(0, 0);
    let v: Vec<u64> = (0..7).map(|_| g.next_index(&mut rng)).collect();
    assert_eq!(v, [0, 1, 2, 0, 1, 2, 0]);
    let mut h = KeyGen::new(3, KeyDist::Sequential, 8).unwrap();
    assert_eq!(h.next_index(&mut rng), 0);
    let mut one = KeyGen::new(1, KeyDist::Sequential, 1).unwrap();
    assert_eq!(one.next_index(&mut rng), 0);
    assert_eq!(one.next_index(&mut rng), 0);
}

#[test]
fn value_sizes_parse() {
    assert_eq!("100".parse::<ValueSizes>(), Ok(ValueSizes::Fixed(100)));
    assert_eq!("0".parse::<ValueSizes>(), Ok(ValueSizes::Fixed(0)));
    assert_eq!("10-20".parse::<ValueSizes>(), Ok(ValueSizes::Range(10, 20)));
    assert_eq!("5-5".parse::<ValueSizes>(), Ok(ValueSizes::Range(5, 5)));
    let w: ValueSizes = "100:90,1000:9,100000:1".parse().unwrap();
    assert_eq!(w.max(), 100_000);
    assert_eq!(w.to_string(), "100:90,1000:9,100000:1");
    // A zero-weight entry is never drawn, so it does not count for max.
    let w: ValueSizes = "100:1,5000:0".parse().unwrap();
    assert_eq!(w.max(), 100);
    assert_eq!("10-20".parse::<ValueSizes>().unwrap().max(), 20);
    for bad in [
        "",
        "x",
        "-1",
        "20-10",
        "1-",
        "-",
        "100:0",
        "100:0,200:0",
        "100:x",
        "a:1",
        "100:1,",
        "1.5",
    ] {
        assert!(bad.parse::<ValueSizes>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn value_sizes_sample() {
    let mut rng = worker_rng(9, 0);
    let r: ValueSizes = "10-12".parse().unwrap();
    let mut seen = [0u32; 3];
    for _ in 0..3000 {
        let s = r.sample(&mut rng);
        assert!((10..=12).contains(&s));
        seen[s - 10] += 1;
    }
    assert!(seen.iter().all(|&c| c > 800), "{seen:?}");

    let w: ValueSizes = "100:90,1000:9,100000:1".parse().unwrap();
    let mut counts: HashMap<usize, u32> = HashMap::new();
    let n = 100_000;
    for _ in 0..n {
        *counts.entry(w.sample(&mut rng)).or_default() += 1;
    }
    assert_eq!(counts.len(), 3);
    let share = |s| f64::from(counts[&s]) / f64::from(n);
    assert!((share(100) - 0.90).abs() < 0.01, "{counts:?}");
    assert!((share(1000) - 0.09).abs() < 0.01, "{counts:?}");
    assert!((share(100_000) - 0.01).abs() < 0.005, "{counts:?}");
}

#[test]
fn ops_and_mix_parse() {
    for op in Op::ALL {
        assert_eq!(op.name().parse::<Op>(), Ok(op));
        assert_eq!(op.name(), op.name().to_lowercase());
    }
    assert_eq!("multi-get".parse::<Op>(), Ok(Op::MultiGet));
    let e = "frobnicate".parse::<Op>().unwrap_err();
    assert!(e.contains("multiget") && e.contains("gat"), "{e}");

    let m: Mix = "get=80,set=20".parse().unwrap();
    assert_eq!(m.ops(), [Op::Get, Op::Set]);
    assert_eq!(m.weight(Op::Get), 80);
    assert_eq!(m.weight(Op::Delete), 0);
    assert_eq!(m.to_string(), "get=80,set=20");
    let m: Mix = " get = 1 , delete=0 ,cas=3".parse().unwrap();
    assert_eq!(m.ops(), [Op::Get, Op::Cas]);

    let e = "get=80,fetch=20".parse::<Mix>().unwrap_err();
    assert!(e.contains("fetch") && e.contains("multiget"), "{e}");
    for bad in [
        "",
        "get",
        "get=",
        "get=-1",
        "get=x",
        "get=0",
        "get=0,set=0",
        "get=1,get=2",
    ] {
        assert!(bad.parse::<Mix>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn mix_respects_weights() {
    let m: Mix = "get=80,set=20,delete=0".parse().unwrap();
    let mut rng = worker_rng(5, 2);
    let mut counts: HashMap<Op, u32> = HashMap::new();
    for _ in 0..100_000 {
        *counts.entry(m.sample(&mut rng)).or_default() += 1;
    }
    assert!(!counts.contains_key(&Op::Delete));
    let g = f64::from(counts[&Op::Get]) / 100_000.0;
    assert!((g - 0.8).abs() < 0.01, "{counts:?}");
}

#[test]
fn values_round_trip_and_detect_damage() {
    let key = b"key:000042";
    let v = value_for(1, key, 1000);
    assert_eq!(v.len(), 1000);
    assert!(v.iter().all(|b| b.is_ascii_graphic()));
    assert_eq!(v, value_for(1, key, 1000));
    // Shorter is a prefix of longer, so any length verifies.
    assert_eq!(&value_for(1, key, 13)[..], &v[..13]);
    assert_ne!(v, value_for(2, key, 1000));
    assert_ne!(v, value_for(1, b"key:000043", 1000));

    let f = flags_for(1, key);
    assert_eq!(verify(1, key, f, &v), Ok(()));
    assert_eq!(verify(1, key, f, &v[..999]), Ok(()));
    assert_eq!(verify(1, key, f, b""), Ok(()));
    assert_eq!(
        verify(1, key, f ^ 1, &v),
        Err(Mismatch::Flags {
            expected: f,
            got: f ^ 1
        })
    );
    for pos in [0usize, 7, 8, 500, 999] {
        let mut bad = v.to_vec();
        bad[pos] ^= 0x01;
        match verify(1, key, f, &bad) {
            Err(Mismatch::Data { offset, len, .. }) => {
                assert_eq!((offset, len), (pos, 1000));
            }
            other => panic!("flip at {pos} gave {other:?}"),
        }
    }
    // Another key's value does not pass for this one.
    let other = value_for(1, b"key:000043", 100);
    assert!(verify(1, key, f, &other).is_err());
}

#[test]
fn len_for_is_deterministic_and_in_range() {
    let sizes: ValueSizes = "10-1000".parse().unwrap();
    let mut distinct = std::collections::HashSet::new();
    for i in 0..200u32 {
        let key = format!("key:{i}");
        let l = len_for(3, key.as_bytes(), &sizes);
        assert!((10..=1000).contains(&l));
        assert_eq!(l, len_for(3, key.as_bytes(), &sizes));
        distinct.insert(l);
    }
    // Different keys get different lengths (not one constant).
    assert!(distinct.len() > 100, "{}", distinct.len());
    assert_eq!(len_for(3, b"k", &ValueSizes::Fixed(77)), 77);
}

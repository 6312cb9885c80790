//! memcached's slab classes: which class an item of a given size lands in.
//!
//! memcached (`slabs_init`) starts at a 48-byte item header plus
//! `chunk_size` (`-n`, 48), aligns each size to 8 bytes and multiplies by
//! the growth factor (`-f`, 1.25) until the next size would pass
//! `slab_chunk_max / factor`; the last class holds `slab_chunk_max` (512 KiB
//! by default), and every page is 1 MiB. Larger items are stored as chunks
//! of that last class.

/// Bytes of one slab page.
pub const PAGE: u64 = 1 << 20;

/// The chunk size of every class, in order: class `i` (1-based, as
/// memcached numbers them) holds items up to `sizes[i - 1]` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlabClasses {
    sizes: Vec<u64>,
}

impl SlabClasses {
    /// The classes of a memcached with these settings.
    pub fn new(chunk_size: u64, factor: f64, chunk_max: u64) -> SlabClasses {
        let mut sizes = Vec::new();
        let mut size = 48 + chunk_size;
        // memcached has 63 classes at most, the last one `chunk_max`.
        while sizes.len() < 62 && (size as f64) < chunk_max as f64 / factor {
            size = size.div_ceil(8) * 8;
            sizes.push(size);
            size = (size as f64 * factor) as u64;
        }
        sizes.push(chunk_max);
        SlabClasses { sizes }
    }

    /// memcached's defaults: `-n 48 -f 1.25`, 512 KiB chunks at most.
    pub fn memcached_default() -> SlabClasses {
        SlabClasses::new(48, 1.25, 512 * 1024)
    }

    /// The classes a memcached reports in `stats settings` (`chunk_size`,
    /// `growth_factor`, `slab_chunk_max`); `None` when one is missing.
    pub fn from_settings(body: &[u8]) -> Option<SlabClasses> {
        let chunk_size = stat(body, "chunk_size")?;
        let factor: f64 = stat(body, "growth_factor")?;
        let chunk_max = stat(body, "slab_chunk_max")?;
        (factor > 1.0 && chunk_max > 0).then(|| SlabClasses::new(chunk_size, factor, chunk_max))
    }

    /// The class (1-based) an item of `size` bytes takes its memory from:
    /// the last class for an item larger than every class.
    pub fn class_of(&self, size: u64) -> usize {
        self.sizes
            .partition_point(|&s| s < size)
            .min(self.sizes.len() - 1)
            + 1
    }

    /// Items of `class` per page.
    pub fn per_page(&self, class: usize) -> u64 {
        self.sizes
            .get(class.wrapping_sub(1))
            .map_or(0, |&s| PAGE / s)
    }

    /// How many classes there are.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }
}

/// A top-level value of a `stats` reply body (`STAT name value`).
pub fn stat<T: std::str::FromStr>(body: &[u8], name: &str) -> Option<T> {
    std::str::from_utf8(body).ok()?.lines().find_map(|line| {
        let mut words = line.trim_end().split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("STAT"), Some(n), Some(v)) if n == name => v.parse().ok(),
            _ => None,
        }
    })
}

/// memcached's `ITEM_ntotal` on a 64-bit build with cas: a 48-byte header,
/// the cas, the key and its NUL, the client flags when not 0, the value and
/// its `\r\n`.
pub fn item_size(key: usize, flags: u32, value: usize) -> u64 {
    (48 + 8 + key + 1 + if flags == 0 { 0 } else { 4 } + value + 2) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classes_are_memcacheds() {
        let c = SlabClasses::memcached_default();
        // `memcached -vv` on 1.6.18 lists 39 classes: 96, 120, 152, …,
        // 394840, then 524288.
        assert_eq!(c.len(), 39);
        assert_eq!(&c.sizes[..5], &[96, 120, 152, 192, 240]);
        assert_eq!(c.sizes[11], 1184);
        assert_eq!(c.sizes[37], 394840);
        assert_eq!(c.sizes[38], 524288);
        assert_eq!(c.class_of(96), 1);
        assert_eq!(c.class_of(97), 2);
        assert_eq!(c.class_of(1184), 12);
        assert_eq!(c.class_of(10_000_000), 39);
        assert_eq!(c.per_page(1), 10922);
        assert_eq!(c.per_page(39), 2);
        assert_eq!(c.per_page(0), 0);
        assert_eq!(c.per_page(40), 0);
    }

    #[test]
    fn reads_stats_settings() {
        let body = b"STAT maxbytes 67108864\r\nSTAT chunk_size 48\r\nSTAT growth_factor 1.25\r\n\
STAT slab_chunk_max 524288\r\nEND\r\n";
        assert_eq!(
            SlabClasses::from_settings(body),
            Some(SlabClasses::memcached_default())
        );
        let body =
            b"STAT chunk_size 100\r\nSTAT growth_factor 2.0\r\nSTAT slab_chunk_max 524288\r\n";
        let c = SlabClasses::from_settings(body).unwrap();
        assert_eq!(&c.sizes[..3], &[152, 304, 608]);
        assert_eq!(SlabClasses::from_settings(b"STAT chunk_size 48\r\n"), None);
    }

    #[test]
    fn item_sizes() {
        // A 100-byte value under a 12-byte key: 48 + 8 + 13 + 102.
        assert_eq!(item_size(12, 0, 100), 171);
        assert_eq!(item_size(12, 1, 100), 175);
    }
}

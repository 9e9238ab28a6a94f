//! The verified-token cache: verified tokens by a keyed digest of their bytes (AES-128-PMAC),
//! in a sharded, weighted S3-FIFO cache (`quick_cache`) bounded in entries and in estimated
//! bytes.
//!
//! **Why a digest is as good as the bytes.** A hit must mean that exactly these bytes were
//! verified. The key is the 128-bit PMAC (Black and Rogaway, "A Block-Cipher Mode of Operation for
//! Parallelizable Message Authentication", 2002) with AES-128 of the whole token, under 16 random
//! bytes drawn for each cache when it is built and never shown or logged. PMAC is a pseudorandom
//! function as long as AES is a pseudorandom permutation: without the key, the digest of any chosen
//! input — another payload, another header, or an attacker's own signature on a forged payload — is
//! unpredictable, so a token other than a cached one hits that entry with probability at most
//! (entries held) / 2^128 per attempt (below 2^-111 with 100k entries), plus the mode's own bound
//! of about σ^2 / 2^128 after σ blocks digested in all (under 2^-48 after 2^40 blocks, some 2^34
//! tokens), and an answer (a hit or a miss) tells nothing usable about the key. Nothing of the
//! digests leaves the process. The table's own hash is 64 bits of the digest (already uniform and
//! secret), so there is no second hash. PMAC rather than CMAC (NIST SP 800-38B, the first choice):
//! the same kind of bound, but its blocks are encrypted independently, so a 900-byte token
//! takes about 0.12 µs instead of CMAC's 0.66 µs of chained AES rounds (see
//! [`crate::auth::aes_pmac`]). (Keyed BLAKE3 was measured first: about 7.9k instructions for an
//! 800-byte RS256 token on this machine's SSE4.1 path, against about 1.1k here with AES-NI; SHA-256
//! without SHA extensions, 35k.)
//!
//! **Expiry, revocation, eviction.** The cache does not expire entries by time: the caller
//! checks `exp`/`nbf` and revocations on every hit ([`TokenCache::get`] drops an entry its
//! caller found expired through [`TokenCache::remove`]); an expired entry nobody asks for again
//! is evicted like any cold one. Each entry weighs its estimated bytes, and at least its share
//! of the byte bound under the entry bound, so both bounds hold. `quick_cache` does its
//! bookkeeping inside the calls (no background housekeeping, no read buffers to drain).

use std::hash::{BuildHasher, Hash, Hasher};

/// A token's cache key: its 128-bit PMAC under the cache's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u128);

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // 64 of the digest's bits: uniform and secret already.
        state.write_u64(self.0 as u64);
    }
}

/// Builds [`PassThrough`] hashers: a [`Digest`] is its own hash.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHash;

/// Takes the 64 bits a [`Digest`] writes as the hash, unchanged.
#[derive(Debug, Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Digest`; fold anything else in, so a misuse still
        // hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }
}

impl BuildHasher for DigestHash {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// Weighs an entry by the estimate its value was inserted with (see [`Weighed`]).
#[derive(Debug, Clone, Copy)]
pub struct ByWeight;

/// A value with the weight it counts for in the cache.
#[derive(Debug, Clone)]
pub struct Weighed<V> {
    /// The cached value.
    pub value: V,
    /// Its weight (estimated bytes, at least the least weight of the cache).
    pub weight: u32,
}

impl<V> quick_cache::Weighter<Digest, Weighed<V>> for ByWeight {
    fn weight(&self, _key: &Digest, value: &Weighed<V>) -> u64 {
        u64::from(value.weight)
    }
}

/// Verified tokens by digest, bounded in entries and in estimated bytes.
pub struct TokenCache<V: Clone> {
    /// PMAC under the cache's random key.
    mac: Mac,
    least_weight: u64,
    map: quick_cache::sync::Cache<Digest, Weighed<V>, ByWeight, DigestHash>,
}

impl<V: Clone> TokenCache<V> {
    /// A cache of at most `entries` tokens and `bytes` estimated bytes, with a fresh random
    /// digest key; `None` when `entries` is 0 (the cache is off).
    pub fn new(entries: u64, bytes: u64) -> Option<Self> {
        if entries == 0 {
            return None;
        }
        let least_weight = bytes.checked_div(entries).unwrap_or(0).max(1);
        let options = quick_cache::OptionsBuilder::new()
            // Grown as entries come: a small start keeps an idle gateway small.
            .estimated_items_capacity(entries.min(4096) as usize)
            .weight_capacity(bytes.max(1))
            .build()
            .ok()?;
        let map = quick_cache::sync::Cache::with_options(
            options,
            ByWeight,
            DigestHash,
            Default::default(),
        );
        let mac = Mac::new(&random_key())?;
        Some(TokenCache {
            mac,
            least_weight,
            map,
        })
    }

    /// The digest `token` is cached under.
    pub fn digest(&self, token: &[u8]) -> Digest {
        Digest(u128::from_le_bytes(self.mac.tag(token)))
    }

    /// The value cached for the token of `digest`, if any.
    pub fn get(&self, digest: &Digest) -> Option<V> {
        self.map.get(digest).map(|entry| entry.value)
    }

    /// Caches `value` for the token of `digest`, weighing `estimated_bytes` (at least the
    /// cache's least weight). A value heavier than a shard holds is not kept.
    pub fn insert(&self, digest: Digest, value: V, estimated_bytes: u64) {
        let weight = estimated_bytes.max(self.least_weight);
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        self.map.insert(digest, Weighed { value, weight });
    }

    /// Drops the entry of `digest`, if any.
    pub fn remove(&self, digest: &Digest) {
        self.map.remove(digest);
    }

    /// Drops every entry whose value `drop` returns true for.
    pub fn remove_if(&self, drop: impl Fn(&V) -> bool) {
        self.map.retain(|_, entry| !drop(&entry.value));
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.map.clear();
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no token is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The total weight held (estimated bytes).
    pub fn weight(&self) -> u64 {
        self.map.weight()
    }
}

/// AES-128-PMAC under one key: with AES-NI where the CPU has it (see
/// [`crate::auth::aes_pmac`]), else the `pmac` crate; both give the same tags.
enum Mac {
    #[cfg(target_arch = "x86_64")]
    Ni(Box<crate::auth::aes_pmac::NiPmac>),
    Generic(Box<pmac::Pmac<aes::Aes128>>),
}

impl Mac {
    /// The PMAC of `key`; `None` only if the key were refused (it never is: 16 bytes).
    fn new(key: &[u8; 16]) -> Option<Mac> {
        #[cfg(target_arch = "x86_64")]
        if let Some(ni) = crate::auth::aes_pmac::NiPmac::new(key) {
            return Some(Mac::Ni(Box::new(ni)));
        }
        <pmac::Pmac<aes::Aes128> as pmac::Mac>::new_from_slice(key)
            .ok()
            .map(|mac| Mac::Generic(Box::new(mac)))
    }

    /// The 16-byte tag of `message`.
    fn tag(&self, message: &[u8]) -> [u8; 16] {
        match self {
            #[cfg(target_arch = "x86_64")]
            Mac::Ni(ni) => ni.tag(message),
            Mac::Generic(generic) => {
                use pmac::Mac as _;
                let mut mac = (**generic).clone();
                mac.update(message);
                mac.finalize().into_bytes().into()
            }
        }
    }
}

/// 16 bytes from the CSPRNG (a v4 UUID, also CSPRNG-backed, if it fails: 122 random bits).
fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut key).is_err() {
        key.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_differing_in_any_byte_has_another_digest() {
        let cache = TokenCache::<u32>::new(100, 1 << 20).expect("cache");
        let token = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl".to_vec();
        let digest = cache.digest(&token);
        assert_eq!(digest, cache.digest(&token), "deterministic under one key");
        cache.insert(digest, 7, 100);
        assert_eq!(cache.get(&cache.digest(&token)), Some(7));
        for i in 0..token.len() {
            let mut other = token.clone();
            other[i] ^= 1;
            assert_eq!(cache.get(&cache.digest(&other)), None, "byte {i}");
        }
        assert_eq!(cache.get(&cache.digest(&token[1..])), None);
        assert_eq!(cache.get(&cache.digest(&[&token[..], b"x"].concat())), None);
        // Another cache draws another key: digests are not predictable across processes.
        let other = TokenCache::<u32>::new(100, 1 << 20).expect("cache");
        assert_ne!(other.digest(&token), digest);
    }

    #[test]
    fn the_byte_bound_and_the_entry_bound_both_hold() {
        // 64 kB and 100 entries: entries of 2 kB fill the bytes first, entries of 10 bytes
        // (weighed at least 640) the entry count.
        let cache = TokenCache::<u32>::new(100, 64 << 10).expect("cache");
        for i in 0..1000u32 {
            let digest = cache.digest(&i.to_le_bytes());
            cache.insert(digest, i, 2048);
        }
        assert!(cache.weight() <= 64 << 10, "{}", cache.weight());
        assert!(cache.len() <= 32, "{}", cache.len());
        let cache = TokenCache::<u32>::new(100, 64 << 10).expect("cache");
        for i in 0..1000u32 {
            cache.insert(cache.digest(&i.to_le_bytes()), i, 10);
        }
        assert!(cache.len() <= 100, "{}", cache.len());
        assert!(cache.len() >= 50, "{}", cache.len());
    }

    #[test]
    fn no_cache_without_entries_and_removal_by_value() {
        assert!(TokenCache::<u32>::new(0, 1 << 20).is_none());
        let cache = TokenCache::<u32>::new(100, 1 << 20).expect("cache");
        for i in 0..10u32 {
            cache.insert(cache.digest(&i.to_le_bytes()), i, 100);
        }
        cache.remove_if(|v| v % 2 == 0);
        assert_eq!(cache.len(), 5);
        cache.remove(&cache.digest(&1u32.to_le_bytes()));
        assert_eq!(cache.get(&cache.digest(&1u32.to_le_bytes())), None);
        assert_eq!(cache.get(&cache.digest(&3u32.to_le_bytes())), Some(3));
        assert_eq!(cache.len(), 4);
    }
}

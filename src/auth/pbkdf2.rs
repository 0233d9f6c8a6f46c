//! HMAC-SHA-256 (RFC 2104) and PBKDF2-HMAC-SHA-256 (RFC 8018), on
//! `sha256.rs`: what turns a password and a salt into the hash the auth
//! file keeps (`users.rs`).
//!
//! PBKDF2 runs HMAC over the password many thousand times, so that each
//! guess costs an attacker who has stolen the file as much as it costs
//! the broker to check one login.

use super::sha256::{Sha256, BLOCK_BYTES, DIGEST_BYTES};

/// HMAC-SHA-256 with one key, ready for many messages: the key's inner
/// and outer pads are hashed once, and each message starts from those
/// states, which halves the work of PBKDF2's loop.
#[derive(Clone)]
pub struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    pub fn new(key: &[u8]) -> Hmac {
        let mut block = [0u8; BLOCK_BYTES];
        if key.len() > BLOCK_BYTES {
            block[..DIGEST_BYTES].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let mut hash = Sha256::default();
            hash.update(&block.map(|b| b ^ byte));
            hash
        };
        Hmac {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// The MAC of the message made of `pieces`, one after the other.
    pub fn mac(&self, pieces: &[&[u8]]) -> [u8; DIGEST_BYTES] {
        let mut inner = self.inner.clone();
        pieces.iter().for_each(|piece| inner.update(piece));
        let mut outer = self.outer.clone();
        outer.update(&inner.finish());
        outer.finish()
    }
}

/// PBKDF2-HMAC-SHA-256: `out.len()` bytes derived from `password` and
/// `salt` with `iterations` rounds.
pub fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    let hmac = Hmac::new(password);
    for (index, chunk) in out.chunks_mut(DIGEST_BYTES).enumerate() {
        let block_number = (index as u32 + 1).to_be_bytes();
        let mut u = hmac.mac(&[salt, &block_number]);
        let mut block = u;
        for _ in 1..iterations {
            u = hmac.mac(&[&u]);
            block.iter_mut().zip(u).for_each(|(b, x)| *b ^= x);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::sha256::to_hex;
    use super::*;

    /// RFC 4231, test case 2: a key shorter than a block; and test case
    /// 6: a key longer than a block (131 bytes), which is hashed first.
    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = Hmac::new(b"Jefe").mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaa; 131];
        let mac =
            Hmac::new(&long_key).mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(
            to_hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// RFC 7914, section 11: the two PBKDF2-HMAC-SHA-256 vectors.
    #[test]
    fn pbkdf2_matches_rfc_7914() {
        for (password, salt, iterations, expected) in [
            (
                &b"passwd"[..],
                &b"salt"[..],
                1,
                "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
                 49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
            ),
            (
                b"Password",
                b"NaCl",
                80_000,
                "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
                 a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d",
            ),
        ] {
            let mut out = [0u8; 64];
            pbkdf2(password, salt, iterations, &mut out);
            assert_eq!(to_hex(&out), expected);
        }
    }
}

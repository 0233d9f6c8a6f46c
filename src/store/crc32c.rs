//! CRC-32C (Castagnoli), the checksum of every record the disk store writes.
//!
//! A checksum lets recovery tell a whole record from one a crash cut short
//! or a disk flipped a bit in. CRC-32C is the one iSCSI, ext4 and Kafka use:
//! it catches every burst error up to 32 bits, and its polynomial was chosen
//! for better detection than the older CRC-32 at the same cost. The design
//! allows no crate for it, so here it is by hand.
//!
//! It is the table-driven form, "slicing by 8": the checksum is kept
//! reflected (bit 0 is the coefficient of x^31), and eight tables, computed
//! at compile time from the polynomial, say what each of the next eight
//! bytes contributes once shifted through the register, so one step takes
//! eight bytes with eight lookups instead of eight dependent steps. The
//! bytes left over are taken one at a time with the first table. The disk
//! store checksums every record it writes and every record it reads back,
//! so this speed matters: it is several times the byte-at-a-time form.
//!
//! On x86-64 processors with SSE 4.2 (every one made since about 2010) the
//! tables give way to the processor's own `crc32` instruction, which
//! computes this very CRC eight bytes at a time, several times faster
//! still. That matters because the dispatcher checksums every record it
//! appends: with the tables, one record in four of the dispatcher's time
//! went to it in a 1 → 1 run on disk (`perf`, docs/PERFORMANCE.md). The
//! instruction is reached through `std::arch`, in the one `unsafe` call of
//! this file, made only once the processor is known to have it; the tests
//! check that both ways agree.

/// The Castagnoli polynomial, reflected.
const POLYNOMIAL: u32 = 0x82F6_3B78;

/// `TABLES[0][b]` is the remainder of the byte `b` (as the high-order
/// coefficients) divided by the polynomial; `TABLES[k][b]` is the same byte
/// followed by `k` zero bytes.
///
/// Computed at compile time, and a `static`, not a `const`: a `const` is
/// pasted in wherever it is used, and an unoptimised build then copies all
/// 8 KiB onto the stack for every lookup, which made the debug broker (the
/// one the tests run) spend most of its time in `memcpy`.
static TABLES: [[u32; 256]; 8] = {
    let mut tables = [[0u32; 256]; 8];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut byte = 0;
        while byte < 256 {
            let previous = tables[k - 1][byte];
            tables[k][byte] = (previous >> 8) ^ tables[0][(previous & 0xFF) as usize];
            byte += 1;
        }
        k += 1;
    }
    tables
};

/// A checksum being computed over several pieces of data.
#[derive(Debug, Clone, Copy)]
pub struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Crc32c {
        Crc32c::new()
    }
}

impl Crc32c {
    pub fn new() -> Crc32c {
        // The register starts all ones, so leading zero bytes still count.
        Crc32c(!0)
    }

    /// Adds `bytes` to the checksum.
    pub fn update(self, bytes: &[u8]) -> Crc32c {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: `instruction::update` needs SSE 4.2, which the
            // processor was just seen to have.
            return Crc32c(unsafe { instruction::update(self.0, bytes) });
        }
        self.update_with_tables(bytes)
    }

    /// [`Crc32c::update`] with the tables, on any processor.
    fn update_with_tables(mut self, bytes: &[u8]) -> Crc32c {
        let mut eights = bytes.chunks_exact(8);
        for eight in &mut eights {
            let low = self.0 ^ u32::from_le_bytes([eight[0], eight[1], eight[2], eight[3]]);
            let high = u32::from_le_bytes([eight[4], eight[5], eight[6], eight[7]]);
            let t = |k: usize, word: u32, shift: u32| TABLES[k][((word >> shift) & 0xFF) as usize];
            self.0 = t(7, low, 0)
                ^ t(6, low, 8)
                ^ t(5, low, 16)
                ^ t(4, low, 24)
                ^ t(3, high, 0)
                ^ t(2, high, 8)
                ^ t(1, high, 16)
                ^ t(0, high, 24);
        }
        for &byte in eights.remainder() {
            let index = (self.0 ^ u32::from(byte)) & 0xFF;
            self.0 = (self.0 >> 8) ^ TABLES[0][index as usize];
        }
        self
    }

    /// The checksum of everything added.
    pub fn finish(self) -> u32 {
        !self.0
    }
}

/// The checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    Crc32c::new().update(bytes).finish()
}

/// The same register update as the tables, by the `crc32` instruction of
/// SSE 4.2, whose polynomial is Castagnoli's and which keeps its register
/// reflected, as this file does.
#[cfg(target_arch = "x86_64")]
mod instruction {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};

    /// Adds `bytes` to the register `crc`. Only for a processor with SSE
    /// 4.2, which is why it is `unsafe` to call.
    #[target_feature(enable = "sse4.2")]
    pub unsafe fn update(crc: u32, bytes: &[u8]) -> u32 {
        let mut eights = bytes.chunks_exact(8);
        let mut wide = u64::from(crc);
        for eight in &mut eights {
            let word = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
            wide = _mm_crc32_u64(wide, word);
        }
        let mut crc = wide as u32;
        for &byte in eights.remainder() {
            crc = _mm_crc32_u8(crc, byte);
        }
        crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check value every CRC catalogue gives for CRC-32C: the checksum
    /// of the ASCII digits "123456789".
    #[test]
    fn matches_the_published_check_value() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
    }

    /// The test vectors of RFC 3720 (iSCSI), appendix B.4.
    #[test]
    fn matches_the_rfc_3720_vectors() {
        assert_eq!(checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(checksum(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(checksum(&ascending), 0x46DD_794E);
        let descending: Vec<u8> = (0..32).rev().collect();
        assert_eq!(checksum(&descending), 0x113F_DB5C);
    }

    /// The slow, obvious form: one bit at a time.
    fn bit_by_bit(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLYNOMIAL
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Both ways (the instruction, where the processor has it, and the
    /// tables) agree with the bit-by-bit form.
    #[test]
    fn agrees_with_the_bit_by_bit_form_at_every_length_and_alignment() {
        let bytes: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for end in start..bytes.len() {
                let piece = &bytes[start..end];
                let expected = bit_by_bit(piece);
                assert_eq!(checksum(piece), expected);
                let tables = Crc32c::new().update_with_tables(piece).finish();
                assert_eq!(tables, expected);
            }
        }
    }

    #[test]
    fn pieces_add_up_to_the_whole() {
        let whole = checksum(b"hello, brook");
        let pieces = Crc32c::new().update(b"hello").update(b", brook").finish();
        assert_eq!(pieces, whole);
        assert_eq!(checksum(b""), 0);
    }
}

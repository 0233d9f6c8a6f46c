//! A small deterministic random generator: no crates, and the same draws
//! for the same seed on every run, so a failure can be replayed.

/// xorshift64: tiny, deterministic, and good enough to pick bytes.
pub struct Random(u64);

impl Random {
    /// A generator started from `seed`, which must not be zero (xorshift
    /// would draw zeros for ever).
    pub fn new(seed: u64) -> Random {
        assert_ne!(seed, 0, "a xorshift seed of zero draws only zeros");
        Random(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True about once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *self.pick_ref(items)
    }

    pub fn pick_ref<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// `len` bytes drawn from `alphabet`.
    pub fn text(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len).map(|_| self.pick(alphabet)).collect()
    }
}

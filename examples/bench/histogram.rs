//! A log-linear latency histogram, in nanoseconds.
//!
//! Values below 128 get a bucket each. Above that, every power of two
//! `[2^e, 2^(e+1))` is cut into 64 equal sub-buckets, so a bucket is never
//! wider than 1/64 (about 1.6 %) of the values in it. That covers 1 ns to
//! 584 years in 3,776 counters (30 KiB), costs a shift and an add to record,
//! and two histograms merge by adding their counters. The same idea as
//! HdrHistogram, in a few dozen lines.

/// 64 sub-buckets per power of two.
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Values `0..128` have exact buckets (indexes 0..128); each of the 57 higher
/// powers of two (`2^7` to `2^63`) adds 64 more.
const BUCKETS: usize = (64 - SUB_BUCKET_BITS as usize + 1) * SUB_BUCKETS;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// A summary: 3,776 counters would drown the output.
impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("p50", &self.quantile(0.5))
            .field("max", &self.max)
            .finish()
    }
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `quantile` (0.0 to 1.0) of the
    /// recorded values fall, to within the bucket width: the highest value of
    /// the bucket holding that rank, never above the largest value recorded.
    pub fn quantile(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((quantile * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest_in(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Which bucket `value` is counted in.
fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB_BUCKETS as u64 {
        return value as usize;
    }
    let power = 63 - value.leading_zeros(); // at least 7
    let shift = power - SUB_BUCKET_BITS; // bucket width is 2^shift
    let top_bits = (value >> shift) as usize; // 64..128
    shift as usize * SUB_BUCKETS + top_bits
}

/// The largest value counted in `bucket` (the inverse of [`bucket_of`]).
fn highest_in(bucket: usize) -> u64 {
    if bucket < 2 * SUB_BUCKETS {
        return bucket as u64;
    }
    let shift = (bucket / SUB_BUCKETS - 1) as u32;
    let top_bits = (bucket % SUB_BUCKETS + SUB_BUCKETS) as u64;
    let lowest = top_bits << shift;
    lowest + ((1u64 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut previous = 0;
        for value in (0..1_000_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket >= previous && bucket < BUCKETS);
            assert!(highest_in(bucket) >= value);
            assert!(highest_in(bucket) - value <= value / 64);
            previous = bucket;
        }
    }

    #[test]
    fn quantiles() {
        let mut histogram = Histogram::default();
        (1..=1000).for_each(|v| histogram.record(v * 1000));
        let p50 = histogram.quantile(0.5);
        assert!((500_000..=508_000).contains(&p50), "{p50}");
        assert_eq!(histogram.quantile(1.0), 1_000_000);
        // The top of the smallest value's bucket, within 1/64 of it.
        assert!((1000..=1000 + 1000 / 64).contains(&histogram.quantile(0.0)));
    }
}

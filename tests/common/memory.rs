//! A child broker's resident memory, read from `/proc`, and a log of it
//! that fails a test once the broker has held more than a bound.

use std::fs;

/// A process's resident memory, from `/proc/<pid>/status`, in KiB: for
/// the tests that hold a child broker to a memory bound.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub now: u64,
    /// `VmHWM`: the most it has ever had resident.
    pub peak: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let path = format!("/proc/{pid}/status");
        let status = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        // A line such as "VmHWM:\t   96312 kB".
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_suffix(" kB"))
                .and_then(|kib| kib.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {path}:\n{status}"))
        };
        Memory {
            now: field("VmRSS:"),
            peak: field("VmHWM:"),
        }
    }
}

/// A child broker's memory, sampled as a test goes, which fails the test
/// as soon as a sample shows the broker has held `bound_mib` MiB. The peak
/// is the kernel's, so nothing between two samples escapes it. It prints
/// as the samples, one a line.
pub struct MemoryLog {
    pid: u32,
    bound_mib: u64,
    samples: Vec<(String, Memory)>,
}

impl MemoryLog {
    pub fn new(pid: u32, bound_mib: u64) -> MemoryLog {
        MemoryLog {
            pid,
            bound_mib,
            samples: Vec::new(),
        }
    }

    /// Samples the broker's memory, noting `when`, and fails the test if
    /// its peak has reached the bound.
    #[track_caller]
    pub fn sample(&mut self, when: impl Into<String>) {
        let memory = Memory::of(self.pid);
        self.samples.push((when.into(), memory));
        assert!(
            memory.peak < self.bound_mib << 10,
            "the broker's memory reached {} MiB:\n{self}",
            self.bound_mib
        );
    }
}

impl std::fmt::Display for MemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (when, memory) in &self.samples {
            let (now, peak) = (memory.now >> 10, memory.peak >> 10);
            writeln!(f, "  {when}: VmRSS {now} MiB, VmHWM {peak} MiB")?;
        }
        Ok(())
    }
}

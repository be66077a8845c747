//! CPU accounting for a bench phase, from /proc: payhook's own threads
//! (the bench's receiver runs on threads named `bench-rx`, which are left
//! out), and every `postgres` process on the machine (the database's share
//! on Postgres; on SQLite the database runs inside payhook's threads).

use std::time::Instant;

/// Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    payhook: u64,
    database: u64,
    at: Instant,
}

/// What a phase cost: CPU seconds and how many of the cores were busy.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CpuUse {
    pub wall_secs: f64,
    pub payhook_cpu_secs: f64,
    pub database_cpu_secs: f64,
    /// (payhook + database) CPU seconds per wall second.
    pub cores_busy: f64,
}

impl CpuClock {
    pub fn start() -> CpuClock {
        CpuClock {
            payhook: own_ticks(),
            database: postgres_ticks(),
            at: Instant::now(),
        }
    }

    pub fn read(&self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64();
        let payhook = own_ticks().saturating_sub(self.payhook) as f64 / TICKS;
        let database = postgres_ticks().saturating_sub(self.database) as f64 / TICKS;
        CpuUse {
            wall_secs: wall,
            payhook_cpu_secs: payhook,
            database_cpu_secs: database,
            cores_busy: (payhook + database) / wall.max(1e-9),
        }
    }
}

impl CpuUse {
    /// payhook's CPU per delivery, ms.
    pub fn payhook_ms_per(&self, deliveries: usize) -> f64 {
        self.payhook_cpu_secs * 1000.0 / deliveries.max(1) as f64
    }

    /// The database's CPU per delivery, ms (Postgres only).
    pub fn database_ms_per(&self, deliveries: usize) -> f64 {
        self.database_cpu_secs * 1000.0 / deliveries.max(1) as f64
    }
}

/// utime + stime of a /proc stat line (fields 14 and 15, after the comm).
fn ticks(stat: &str) -> u64 {
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let at = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    at(14) + at(15)
}

/// This process's threads, less the bench receiver's.
fn own_ticks() -> u64 {
    ticks_where("/proc/self/task", |comm| !comm.starts_with("bench-rx"))
}

/// Every `postgres` process's CPU so far.
fn postgres_ticks() -> u64 {
    ticks_where("/proc", |comm| comm.trim() == "postgres")
}

/// CPU ticks of the numbered entries of `dir` (processes or threads) whose
/// `comm` `keep` takes.
fn ticks_where(dir: &str, keep: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| keep(&c)))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .map(|s| ticks(&s))
        .sum()
}

/// Resident memory now, MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") / 1024.0
}

/// The process's peak resident memory so far, MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

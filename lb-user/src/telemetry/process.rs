//! The daemon's own process figures, read from /proc at scrape time (Linux only, like the
//! daemon): CPU time, resident memory, open and allowed descriptors, start time.
// Unsafe here: sysconf(3) for the clock tick and page size: libc has no safe wrapper.
#![allow(unsafe_code)]

/// What one scrape reports; a figure /proc could not give is None (left out).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
}

pub fn read() -> ProcessFigures {
    let ticks = sysconf(libc::_SC_CLK_TCK);
    let page = sysconf(libc::_SC_PAGESIZE);
    let stat = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| parse_stat(&s));
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| boot_time(&s));
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64);
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok().map(|(soft, _)| soft);
    ProcessFigures {
        cpu_seconds: stat.zip(ticks).map(|(s, t)| (s.utime + s.stime) as f64 / t as f64),
        resident_bytes: stat.zip(page).map(|(s, p)| s.rss_pages * p),
        virtual_bytes: stat.map(|s| s.vsize),
        open_fds,
        max_fds,
        start_time_seconds: stat.zip(ticks).zip(boot).map(|((s, t), b)| b as f64 + s.starttime as f64 / t as f64),
        threads: stat.map(|s| s.threads),
    }
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a constant of the system; it has no memory effects.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|v| *v > 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Fields of /proc/PID/stat (proc(5)); the command name, field 2, may hold spaces and
/// parentheses, so fields are counted from its closing parenthesis.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { utime: field(14)?, stime: field(15)?, threads: field(20)?, starttime: field(22)?, vsize: field(23)?, rss_pages: field(24)? })
}

/// `btime` of /proc/stat: boot time, seconds since the epoch.
fn boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (lb user (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 123456 104857600 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat, Stat { utime: 250, stime: 50, threads: 7, starttime: 123456, vsize: 104857600, rss_pages: 2048 });
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
    }

    #[test]
    fn this_process_reads_its_own_figures() {
        let figures = read();
        assert!(figures.cpu_seconds.is_some() && figures.resident_bytes.unwrap() > 0 && figures.open_fds.unwrap() > 0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = figures.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 86_400.0 * 365.0, "start time {started} vs now {now}");
    }
}

//! Helpers shared by the bench binaries that print their own figures.

use std::io::Write as _;
use std::path::PathBuf;

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/` of the workspace).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Appends one JSON line to `target/NAME` (best effort: a failure is printed).
pub(crate) fn append_json(name: &str, line: &str) {
    let path = target_dir().join(name);
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"))
    {
        Ok(()) => println!("  appended to {}", path.display()),
        Err(e) => println!("  could not append to {}: {e}", path.display()),
    }
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, else 100).
pub(crate) fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t: &f64| t > 0.0)
        .unwrap_or(100.0)
}

/// A process's user + system CPU time so far in clock ticks (`utime` + `stime` of
/// `/proc/PID/stat`), `None` once it is gone.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A process's peak resident set size (`VmHWM` of `/proc/PID/status`, kB), 0 if unknown.
pub(crate) fn vmhwm_kb_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The first process whose command line contains `needle` (e.g. a broker started by a
/// helper that does not expose its PID).
pub(crate) fn pid_by_cmdline(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        cmd.contains(needle).then_some(pid)
    })
}

/// `GET /metrics` on a loopback port: the Prometheus text body, `None` on any failure.
pub(crate) fn scrape_metrics(port: u16) -> Option<String> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The sum of every series of metric `name` (any labels) in a Prometheus text body,
/// with `skip` deciding which sample values to leave out (e.g. negative "unknown"s).
pub(crate) fn metric_sum(body: &str, name: &str, skip: impl Fn(f64) -> bool) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = if let Some(r) = rest.strip_prefix('{') {
                &r[r.find('}')? + 1..]
            } else {
                rest
            };
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .filter(|v| !skip(*v))
        .sum()
}

/// The cumulative buckets `(le, count)` of histogram `name` (no other labels), in
/// ascending `le`, `+Inf` last.
pub(crate) fn histogram_buckets(body: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut v: Vec<(f64, f64)> = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, rest) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// The `q` quantile of the observations between two cumulative bucket snapshots
/// (same bounds), interpolated linearly inside the bucket as Prometheus'
/// `histogram_quantile` does; `INFINITY` when it falls in the `+Inf` bucket, `NAN`
/// with no observations.
pub(crate) fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, c)| {
            let b = before.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
            (le, c - b)
        })
        .collect();
    let Some(&(_, total)) = delta.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in &delta {
        if c >= rank {
            if le.is_infinite() {
                return f64::INFINITY;
            }
            let in_bucket = c - prev.1;
            let frac = if in_bucket > 0.0 {
                (rank - prev.1) / in_bucket
            } else {
                1.0
            };
            return prev.0 + (le - prev.0) * frac;
        }
        prev = (le, c);
    }
    f64::INFINITY
}

//! [`Process`]: the process metrics (memory, CPU, file descriptors,
//! threads, start time) of the `prometheus` crate's Linux collector, with
//! `process_cpu_seconds_total` in fractions of a second. That collector
//! divides the kernel's clock ticks by the tick rate in integers, so a
//! daemon that used 0.8 s of CPU reads 0; here the same ticks are read from
//! `/proc/self/stat` and divided as floats (10 ms steps at the usual 100
//! ticks a second).

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{MetricFamily, MetricType};

/// The process collector, with fractional CPU seconds.
pub(super) struct Process {
    inner: ProcessCollector,
}

impl Process {
    /// The collector of this process, its names under `namespace`.
    pub(super) fn new(namespace: &str) -> Process {
        Process {
            inner: ProcessCollector::new(std::process::id() as i32, namespace),
        }
    }
}

impl Collector for Process {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        let Some(seconds) = cpu_seconds() else {
            return families;
        };
        for family in &mut families {
            let is_cpu = family.name().ends_with("process_cpu_seconds_total")
                && family.get_field_type() == MetricType::COUNTER;
            if !is_cpu {
                continue;
            }
            for metric in family.mut_metric() {
                let mut counter = prometheus::proto::Counter::default();
                counter.set_value(seconds);
                metric.set_counter(counter);
            }
        }
        families
    }
}

/// User plus system CPU time of this process, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    cpu_seconds_from(&stat, ticks_per_second)
}

/// `utime + stime` of a `/proc/PID/stat` line, over the tick rate. The
/// command name (field 2) may hold spaces and parentheses, so the fields
/// are counted from after its last `)`: `utime` and `stime` are the 14th
/// and 15th fields, the 12th and 13th after it.
fn cpu_seconds_from(stat: &str, ticks_per_second: i64) -> Option<f64> {
    if ticks_per_second <= 0 {
        return None;
    }
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_keeps_its_fraction_of_a_second() {
        let stat = "4242 (zulip (event) l) S 1 4242 4242 0 -1 4194560 1450 0 0 0 47 33 0 0 20 0 9 0 123 456 789";
        assert_eq!(cpu_seconds_from(stat, 100), Some(0.8));
        assert_eq!(cpu_seconds_from(stat, 0), None);
        assert_eq!(cpu_seconds_from("garbage", 100), None);
    }

    #[test]
    fn the_exported_cpu_seconds_are_what_the_kernel_counted_not_whole_seconds() {
        // Some CPU time first (a fresh test process may have used none).
        let spin = std::time::Instant::now();
        let mut x = 1u64;
        while cpu_seconds().unwrap_or_default() < 0.05 && spin.elapsed().as_secs() < 10 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let before = cpu_seconds().expect("/proc/self/stat");
        let families = Process::new("t").collect();
        let after = cpu_seconds().expect("/proc/self/stat");
        let cpu = families
            .iter()
            .find(|f| f.name() == "t_process_cpu_seconds_total")
            .expect("the CPU family");
        let value = cpu.get_metric()[0].get_counter().get_value();
        assert!(
            before <= value && value <= after,
            "{before} <= {value} <= {after} (whole seconds would read {})",
            before.floor()
        );
    }
}

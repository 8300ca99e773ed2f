//! What a calibration records about the machine it measured: the CPU
//! model, the kernel, the KVM module and the hardware assists it uses, and
//! the date. A measured figure means little without them: the same
//! exitlab on another part, kernel or KVM flavour measures other numbers.
//! Read from /proc and /sys (Linux); whatever cannot be read says so.

use exitlab_vmm::devices::rtc::civil_from_days;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine, as calibrate writes it into a profile's `[host]` table and
/// every figure's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// `model name (family F, model M, stepping S[, microcode U])`, and
    /// `, under a hypervisor` when CPUID says so.
    pub cpu: String,
    /// The kernel release.
    pub kernel: String,
    /// The KVM vendor module and its hardware-assist parameters.
    pub kvm: String,
    /// UTC date, YYYY-MM-DD.
    pub date: String,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The value of `key` in the first processor's block of /proc/cpuinfo.
fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// The CPU line from /proc/cpuinfo's text.
pub fn describe_cpu(cpuinfo: &str) -> String {
    let f = |k| cpuinfo_field(cpuinfo, k).unwrap_or("?");
    let mut s = format!(
        "{} (family {}, model {}, stepping {}",
        cpuinfo_field(cpuinfo, "model name").unwrap_or("unknown CPU"),
        f("cpu family"),
        f("model"),
        f("stepping")
    );
    if let Some(m) = cpuinfo_field(cpuinfo, "microcode") {
        s.push_str(&format!(", microcode {m}"));
    }
    s.push(')');
    if cpuinfo_field(cpuinfo, "flags").is_some_and(|flags| flags.split_whitespace().any(|x| x == "hypervisor")) {
        s.push_str(", under a hypervisor");
    }
    s
}

/// The KVM modules exitlab knows, and the parameters that say which
/// hardware assists each uses.
const KVM_MODULES: [(&str, &[&str]); 3] = [
    ("kvm_intel", &["ept", "enable_apicv", "vpid", "pml", "enable_ipiv", "nested"]),
    ("kvm_amd", &["npt", "avic", "nested"]),
    ("kvm_pvm", &["pvm_native", "pvm_emul_batch"]),
];

/// The loaded KVM vendor modules under `sys_module` (/sys/module) with
/// their assist parameters, and the core module's `tdp_mmu`.
pub fn describe_kvm(sys_module: &Path) -> String {
    let param = |m: &str, p: &str| read(&sys_module.join(m).join("parameters").join(p).to_string_lossy());
    let mut parts = Vec::new();
    for (module, params) in KVM_MODULES {
        if !sys_module.join(module).exists() {
            continue;
        }
        let set: Vec<String> = params.iter().filter_map(|p| param(module, p).map(|v| format!("{p}={v}"))).collect();
        parts.push(if set.is_empty() { module.to_string() } else { format!("{module} ({})", set.join(" ")) });
    }
    if parts.is_empty() {
        parts.push("no KVM vendor module found under /sys/module".to_string());
    }
    if let Some(t) = param("kvm", "tdp_mmu") {
        parts.push(format!("kvm tdp_mmu={t}"));
    }
    parts.join(", ")
}

impl HostInfo {
    /// This machine, now.
    pub fn here() -> HostInfo {
        let cpu = read("/proc/cpuinfo").map_or("unknown CPU (no /proc/cpuinfo)".to_string(), |t| describe_cpu(&t));
        let kernel = read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown kernel".to_string());
        let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
        let (y, m, d) = civil_from_days(days);
        HostInfo { cpu, kernel, kvm: describe_kvm(Path::new("/sys/module")), date: format!("{y:04}-{m:02}-{d:02}") }
    }

    /// The short form every figure's source starts with.
    pub fn short(&self) -> String {
        format!("{}, {}, {}, {}", self.cpu, self.kernel, self.kvm, self.date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_names_model_and_hypervisor() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\nflags\t\t: fpu vme hypervisor lahf_lm\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            describe_cpu(text),
            "Intel(R) Xeon(R) Processor (family 6, model 207, stepping 2), under a hypervisor"
        );
        let bare = "model name\t: AMD EPYC 9654\ncpu family\t: 25\nmodel\t\t: 17\nstepping\t: 1\nmicrocode\t: 0xa101148\nflags\t\t: fpu svm\n";
        assert_eq!(describe_cpu(bare), "AMD EPYC 9654 (family 25, model 17, stepping 1, microcode 0xa101148)");
    }

    #[test]
    fn kvm_modules_and_their_assists() {
        let dir = std::env::temp_dir().join(format!("exitlab-hostinfo-{}", std::process::id()));
        let p = dir.join("kvm_intel/parameters");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("ept"), "Y\n").unwrap();
        std::fs::write(p.join("enable_apicv"), "N\n").unwrap();
        std::fs::create_dir_all(dir.join("kvm/parameters")).unwrap();
        std::fs::write(dir.join("kvm/parameters/tdp_mmu"), "Y\n").unwrap();
        assert_eq!(describe_kvm(&dir), "kvm_intel (ept=Y enable_apicv=N), kvm tdp_mmu=Y");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(describe_kvm(Path::new("/nonexistent")), "no KVM vendor module found under /sys/module");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}

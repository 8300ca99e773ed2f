//! Guest images from files (`--image`): read, loaded by exitlab-loader
//! into memory chunks, an entry state and symbols, given a machine, and
//! turned into the [`BootImage`] the VMM runs on either backend.
//!
//! The machine: `--machine FILE` if given, else `IMAGE.toml` beside the
//! image (the image's full file name with `.toml` added:
//! `setjmp.flat.toml`) if there is one, else the default. An image's
//! machine is the PC platform unless its file says otherwise
//! (`platform = "exitlab"`): images from elsewhere expect a PC.

use exitlab_guest::boot::Chunk;
use exitlab_guest::machine::{MachineConfig, MachineError, Platform};
use exitlab_guest::BootImage;
use exitlab_loader::{FlatOptions, Format, LoadError, Module, Options, Symbols};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Guest RAM an image gets unless told otherwise: QEMU's default, which
/// kvm-unit-tests assume (sieve allocates 3 x 100 MB).
pub const DEFAULT_MEMORY: u64 = 128 << 20;

/// What to load and how.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    pub path: PathBuf,
    /// The format, or `None` to detect it.
    pub format: Option<Format>,
    /// The kernel command line (multiboot, bzImage).
    pub cmdline: String,
    /// Multiboot modules, in order.
    pub modules: Vec<Module>,
    /// A Linux initial RAM disk.
    pub initrd: Option<Vec<u8>>,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Where a flat binary loads and starts.
    pub flat: Option<FlatOptions>,
    /// The machine file named on the command line (`--machine`).
    pub machine: Option<PathBuf>,
}

impl ImageRequest {
    /// `path` with defaults: detected format, no command line, modules or
    /// initrd, [`DEFAULT_MEMORY`], the machine file beside it if any.
    pub fn new(path: impl Into<PathBuf>) -> ImageRequest {
        ImageRequest {
            path: path.into(),
            format: None,
            cmdline: String::new(),
            modules: Vec::new(),
            initrd: None,
            memory: DEFAULT_MEMORY,
            flat: None,
            machine: None,
        }
    }
}

/// An image ready to run, and what the loader found in it.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    pub boot: BootImage,
    pub format: Format,
    /// The image's symbol table, with sizes (for exits by function).
    pub symbols: Symbols,
    /// The machine file used, if any.
    pub machine_file: Option<PathBuf>,
}

impl LoadedImage {
    /// The function `rip` is in, as `name` (perf's symbol view names the
    /// symbol alone).
    pub fn function(&self, rip: u64) -> Option<String> {
        self.symbols.lookup(rip).map(|(s, _)| s.name.clone())
    }
}

/// Why an image could not be made ready: one line each.
#[derive(Debug)]
pub enum ImageError {
    /// A file could not be read.
    Read { path: PathBuf, source: std::io::Error },
    /// The loader refused the image.
    Load { path: PathBuf, source: LoadError },
    /// The machine file is wrong.
    Machine(MachineError),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            ImageError::Load { path, source } => write!(f, "{}: {source}", path.display()),
            ImageError::Machine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImageError {}

/// Reads `path`.
pub fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Read { path: path.to_path_buf(), source })
}

/// The machine file for an image at `image`: `IMAGE.toml` beside it.
pub fn machine_file_beside(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".toml");
    PathBuf::from(name)
}

/// The machine for `r`: its `--machine` file, else the file beside the
/// image, else the default; the PC platform unless the file names one.
pub fn machine_for(r: &ImageRequest) -> Result<(MachineConfig, Option<PathBuf>), ImageError> {
    let file = r.machine.clone().or_else(|| Some(machine_file_beside(&r.path)).filter(|p| p.is_file()));
    let Some(file) = file else {
        return Ok((MachineConfig { platform: Platform::Pc, ..MachineConfig::default() }, None));
    };
    let text = std::fs::read_to_string(&file).map_err(|source| ImageError::Read { path: file.clone(), source })?;
    let mut machine = MachineConfig::from_toml(&file.display().to_string(), &text).map_err(ImageError::Machine)?;
    // The key's absence means the default of images, not of workloads.
    let names_platform = text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("platform"));
    if !names_platform {
        machine.platform = Platform::Pc;
    }
    Ok((machine, Some(file)))
}

/// Loads the image `r` names, with its machine.
pub fn load(r: &ImageRequest) -> Result<LoadedImage, ImageError> {
    let bytes = read(&r.path)?;
    let (machine, machine_file) = machine_for(r)?;
    let options = Options {
        memory: r.memory,
        format: r.format,
        cmdline: r.cmdline.clone(),
        modules: r.modules.clone(),
        initrd: r.initrd.clone(),
        flat: r.flat,
        // The PC's ACPI tables start with the RSDP (a PVH kernel is told
        // where; the other formats' guests scan for it).
        rsdp: (machine.platform == Platform::Pc).then_some(exitlab_vmm::devices::acpi::ACPI_BASE),
    };
    let g =
        exitlab_loader::load(&bytes, &options).map_err(|source| ImageError::Load { path: r.path.clone(), source })?;
    let symbols: BTreeMap<String, u64> = g.symbols.iter().map(|s| (s.name.clone(), s.addr)).collect();
    let name = r.path.file_stem().map_or_else(|| r.path.display().to_string(), |s| s.to_string_lossy().into_owned());
    let boot = BootImage {
        name,
        chunks: g.chunks.into_iter().map(|c| Chunk { gpa: c.gpa, bytes: c.bytes }).collect(),
        boot: g.boot,
        symbols,
        memory_size: r.memory,
        machine,
    };
    Ok(LoadedImage { boot, format: g.format, symbols: g.symbols, machine_file })
}

/// `128M`, `1G`, `512MiB`, `65536` (bytes), `64K`: a memory size.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("exitlab-lab-image-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sizes_parse_with_their_units() {
        assert_eq!(parse_size("128M"), Some(128 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("12T"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn the_machine_is_the_pc_unless_the_file_beside_the_image_says_otherwise() {
        let d = temp("machine");
        let image = d.join("hello.elf");
        std::fs::write(&image, exitlab_loader::testimage::elf(&exitlab_loader::testimage::Elf::hello(0x20_0000)))
            .unwrap();
        let loaded = load(&ImageRequest::new(&image)).unwrap();
        assert_eq!((loaded.boot.machine.platform, &loaded.machine_file), (Platform::Pc, &None));
        assert_eq!(loaded.boot.name, "hello");
        assert_eq!(loaded.function(0x20_0002).as_deref(), Some("hello"));
        std::fs::write(d.join("hello.elf.toml"), "counters = [\"a\"]\n").unwrap();
        let loaded = load(&ImageRequest::new(&image)).unwrap();
        assert_eq!(loaded.boot.machine.platform, Platform::Pc, "no platform key: still a PC");
        assert_eq!(loaded.boot.machine.counters, ["a"]);
        assert_eq!(loaded.machine_file, Some(d.join("hello.elf.toml")));
        std::fs::write(d.join("other.toml"), "platform = \"exitlab\"\n").unwrap();
        let r = ImageRequest { machine: Some(d.join("other.toml")), ..ImageRequest::new(&image) };
        assert_eq!(load(&r).unwrap().boot.machine.platform, Platform::Exitlab);
        std::fs::write(d.join("bad.toml"), "platfrom = \"pc\"\n").unwrap();
        let r = ImageRequest { machine: Some(d.join("bad.toml")), ..ImageRequest::new(&image) };
        let e = load(&r).unwrap_err().to_string();
        assert!(e.contains("bad.toml:1") && e.contains("platfrom"), "{e}");
    }

    #[test]
    fn a_broken_image_is_one_line_naming_the_file_and_the_problem() {
        let d = temp("broken");
        let image = d.join("cut.elf");
        let mut bytes = exitlab_loader::testimage::elf(&exitlab_loader::testimage::Elf::hello(0x20_0000));
        bytes.truncate(40);
        std::fs::write(&image, bytes).unwrap();
        let e = load(&ImageRequest::new(&image)).unwrap_err().to_string();
        assert!(e.starts_with(&image.display().to_string()) && e.contains("truncated"), "{e}");
        assert_eq!(e.lines().count(), 1);
        let e = load(&ImageRequest::new(d.join("absent.elf"))).unwrap_err().to_string();
        assert!(e.starts_with("cannot read") && e.contains("absent.elf"), "{e}");
    }
}

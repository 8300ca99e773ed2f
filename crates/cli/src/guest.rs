//! What `stat` and `trace` run: a built-in workload, or an image file
//! (`--image`) with its loader options and machine.

use crate::UsageError;
use clap::ValueEnum;
use exitlab_guest::BootImage;
use exitlab_lab::image::{self, ImageRequest, LoadedImage};
use exitlab_loader::{CpuMode, FlatOptions, Format, Module};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Detect it: ELF (multiboot when it has the header, PVH when it has
    /// the PVH entry note), bzImage, or a raw multiboot binary.
    Auto,
    /// Raw bytes (--load, --entry, --mode say where and how they start).
    Flat,
    Elf,
    Multiboot,
    /// A Linux bzImage through its decompressor and 64-bit entry.
    Bzimage,
    /// The PVH entry of a vmlinux, or of the vmlinux a bzImage compresses
    /// (decompressed by the loader, skipping the kernel's decompressor).
    Pvh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Real,
    Protected,
    Long,
}

/// A guest image from a file.
#[derive(clap::Args)]
pub struct ImageArgs {
    /// Run this image file instead of a built-in workload.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["workload", "n", "set"])]
    pub image: Option<PathBuf>,
    /// The image's format.
    #[arg(long, value_enum, default_value = "auto", requires = "image")]
    pub format: FormatArg,
    /// The kernel command line (multiboot, bzImage, PVH).
    #[arg(long, value_name = "TEXT", default_value = "", requires = "image")]
    pub cmdline: String,
    /// A multiboot module (repeatable; in order).
    #[arg(long = "module", value_name = "FILE", requires = "image")]
    pub modules: Vec<PathBuf>,
    /// A Linux initial RAM disk (bzImage; PVH module 0).
    #[arg(long, value_name = "FILE", requires = "image")]
    pub initrd: Option<PathBuf>,
    /// Guest RAM, e.g. 128M, 1G (at most 3G).
    #[arg(long, value_name = "SIZE", default_value = "128M", requires = "image")]
    pub memory: String,
    /// The machine description (TOML); default: IMAGE.toml beside the
    /// image if there is one, else the PC platform.
    #[arg(long, value_name = "FILE", requires = "image")]
    pub machine: Option<PathBuf>,
    /// Where a flat image loads (guest-physical).
    #[arg(long, value_name = "ADDR", default_value = "0x100000", requires = "image")]
    pub load: String,
    /// A flat image's entry point (default: its load address).
    #[arg(long, value_name = "ADDR", requires = "image")]
    pub entry: Option<String>,
    /// The mode a flat image starts in.
    #[arg(long, value_enum, default_value = "long", requires = "image")]
    pub mode: ModeArg,
}

/// A guest ready to run, and how to name its code.
pub struct Guest {
    pub boot: BootImage,
    /// The file's loader result, for an image.
    pub loaded: Option<LoadedImage>,
    /// The built-in workload's symbols (labels), for a workload.
    pub labels: Option<exitlab_guest::Image>,
}

impl Guest {
    /// The guest function `rip` is in: the image's symbol covering it, or
    /// a workload's nearest label at or below it.
    pub fn function(&self, rip: u64) -> Option<String> {
        match (&self.loaded, &self.labels) {
            (Some(l), _) => l.function(rip),
            (None, Some(img)) => img.symbolize(rip).map(|(name, _)| name.to_string()),
            (None, None) => None,
        }
    }
}

fn address(flag: &str, text: &str) -> Result<u64, UsageError> {
    let t = text.trim();
    let v = match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    };
    v.ok_or_else(|| UsageError(format!("{flag}: `{text}` is not an address")))
}

fn read(path: &Path) -> Result<Vec<u8>, UsageError> {
    image::read(path).map_err(|e| UsageError(e.to_string()))
}

/// Loads the image `a` names; every problem is one line.
pub fn load(a: &ImageArgs, path: &Path) -> Result<Guest, UsageError> {
    let memory = image::parse_size(&a.memory)
        .ok_or_else(|| UsageError(format!("--memory: `{}` is not a size (e.g. 128M, 1G)", a.memory)))?;
    let format = match a.format {
        FormatArg::Auto => None,
        FormatArg::Flat => Some(Format::Flat),
        FormatArg::Elf => Some(Format::Elf),
        FormatArg::Multiboot => Some(Format::Multiboot),
        FormatArg::Bzimage => Some(Format::BzImage),
        FormatArg::Pvh => Some(Format::Pvh),
    };
    let load = address("--load", &a.load)?;
    let entry = match &a.entry {
        Some(e) => address("--entry", e)?,
        None => load,
    };
    let mode = match a.mode {
        ModeArg::Real => CpuMode::Real,
        ModeArg::Protected => CpuMode::Protected,
        ModeArg::Long => CpuMode::Long,
    };
    let mut modules = Vec::new();
    for m in &a.modules {
        modules.push(Module { bytes: read(m)?, cmdline: m.display().to_string() });
    }
    let initrd = match &a.initrd {
        Some(p) => Some(read(p)?),
        None => None,
    };
    let request = ImageRequest {
        path: path.to_path_buf(),
        format,
        cmdline: a.cmdline.clone(),
        modules,
        initrd,
        memory,
        flat: Some(FlatOptions { load, entry, mode }),
        machine: a.machine.clone(),
    };
    let loaded = image::load(&request).map_err(|e| UsageError(e.to_string()))?;
    Ok(Guest { boot: loaded.boot.clone(), loaded: Some(loaded), labels: None })
}

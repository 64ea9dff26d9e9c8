//! What a depth engine's runtime finds on this machine: the tensor library, CUDA and the
//! GPUs. The engine crate fills it in ([`crate::EngineLoader::runtime`]); `anydepth doctor`
//! prints it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The runtime behind a depth engine, as found on this machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RuntimeReport {
    /// The tensor library, e.g. `LibTorch`.
    pub library: String,
    /// Its version (e.g. `2.11.0+cu130`), when its folder says.
    pub library_version: Option<String>,
    /// The folder its shared libraries were loaded from.
    pub library_dir: Option<PathBuf>,
    /// CUDA support, as found.
    pub cuda: CudaReport,
    /// The device `--device auto` resolves to here, as the library names it (`Cpu`,
    /// `Cuda(0)`).
    pub auto_device: String,
}

/// CUDA support of a runtime, as found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CudaReport {
    /// Whether the library was built with CUDA (its CUDA part is installed).
    pub compiled: bool,
    /// Whether its CUDA part is loaded into this process.
    pub loaded: bool,
    /// Whether the library can run on at least one CUDA device.
    pub available: bool,
    /// Why CUDA cannot be used, when it cannot.
    pub problem: Option<String>,
    /// The NVIDIA driver's CUDA version (e.g. `13.0`), when a driver is installed.
    pub driver_version: Option<String>,
    /// The CUDA runtime version the library was built with (e.g. `13.0`).
    pub runtime_version: Option<String>,
    /// Whether the library can use cuDNN.
    pub cudnn_available: bool,
    /// The cuDNN version loaded (e.g. `9.19.0`).
    pub cudnn_version: Option<String>,
    /// Every GPU the driver sees.
    pub gpus: Vec<GpuReport>,
    /// Whether models can run from CUDA graphs (`--cuda-graphs`).
    #[serde(default)]
    pub graphs_available: bool,
    /// Why they cannot, when they cannot.
    #[serde(default)]
    pub graphs_problem: Option<String>,
}

/// One GPU, as the driver describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuReport {
    /// The CUDA device index (`--device cuda:INDEX`).
    pub index: u32,
    /// The product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Total memory, in bytes.
    pub memory_bytes: u64,
    /// Compute capability `major.minor`, e.g. `9.0`.
    pub compute_capability: String,
}

/// A CUDA version number (`1000 * major + 10 * minor`, as the driver and runtime report
/// it) as `major.minor`.
///
/// ```
/// assert_eq!(anydepth_model::runtime::cuda_version(13000), "13.0");
/// assert_eq!(anydepth_model::runtime::cuda_version(12080), "12.8");
/// ```
pub fn cuda_version(number: i32) -> String {
    format!("{}.{}", number / 1000, (number % 1000) / 10)
}

/// A cuDNN version number as `major.minor.patch`: `10000 * major + 100 * minor + patch`
/// from cuDNN 9, `1000 * major + 100 * minor + patch` before.
///
/// ```
/// assert_eq!(anydepth_model::runtime::cudnn_version(91900), "9.19.0");
/// assert_eq!(anydepth_model::runtime::cudnn_version(8902), "8.9.2");
/// ```
pub fn cudnn_version(number: usize) -> String {
    if number >= 90_000 {
        format!(
            "{}.{}.{}",
            number / 10_000,
            (number % 10_000) / 100,
            number % 100
        )
    } else {
        format!(
            "{}.{}.{}",
            number / 1000,
            (number % 1000) / 100,
            number % 100
        )
    }
}

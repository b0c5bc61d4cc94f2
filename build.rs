//! Keeps libtorch_cuda linked even though no symbol of it is referenced directly: without
//! `--no-as-needed` the linker drops it and tch reports no GPU on a CUDA machine. Records
//! libtorch's folder as an rpath so the binary runs here without LD_LIBRARY_PATH. Compiles
//! csrc/shim.cpp (what tch lacks: fused SGD/lerp, autocast dtype, CUDA memory statistics, CUDA
//! graphs) and csrc/dist.cpp (c10d's TCPStore and Gloo process group, with the Gloo headers of
//! third_party/gloo) against the same libtorch, with its CUDA half when libtorch has CUDA and the CUDA
//! headers are found (`CUDA_HOME`, /usr/local/cuda, or the pip packages beside torch).
use std::path::{Path, PathBuf};

/// Include folders that together provide the CUDA runtime headers libtorch's CUDA headers need.
/// The pip `nvidia` wheels ship cuda_runtime_api.h without the compiler's crt/ folder, which
/// triton's bundled headers have; a full toolkit has both.
fn cuda_includes(torch_dir: &Path) -> Option<Vec<PathBuf>> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(home) = std::env::var("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    if let Some(site) = torch_dir.parent() {
        candidates.push(site.join("nvidia/cu13/include"));
        candidates.push(site.join("nvidia/cuda_runtime/include"));
        candidates.push(site.join("triton/backends/nvidia/include"));
    }
    let runtime = candidates.iter().find(|d| d.join("cuda_runtime_api.h").exists())?;
    let crt =
        candidates.iter().find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists())?;
    Some(if runtime == crt { vec![runtime.clone()] } else { vec![runtime.clone(), crt.clone()] })
}

/// The folder holding jpeglib.h (`SAMIX_LIBJPEG_INCLUDE`, else the system's), if any.
fn libjpeg_include() -> Option<PathBuf> {
    let dirs = std::env::var("SAMIX_LIBJPEG_INCLUDE").map(|d| vec![PathBuf::from(d)]);
    let dirs = dirs.unwrap_or_else(|_| vec![PathBuf::from("/usr/include"), PathBuf::from("/usr/local/include")]);
    dirs.into_iter().find(|d| d.join("jpeglib.h").exists())
}

/// Compiles csrc/jpeg.c (partial, downscaled JPEG decoding) against libjpeg-turbo when its header
/// is found, linking the static library where there is one (not with feature `shared-libjpeg`) so
/// the binary runs on machines without
/// it, and sets `samix_libjpeg`; without it samix decodes JPEGs in full with `image` and says so.
/// `SAMIX_REQUIRE_LIBJPEG=1` (CI) turns the fallback into a build error.
fn build_jpeg() {
    println!("cargo:rustc-check-cfg=cfg(samix_libjpeg)");
    println!("cargo:rerun-if-env-changed=SAMIX_LIBJPEG_INCLUDE");
    println!("cargo:rerun-if-env-changed=SAMIX_REQUIRE_LIBJPEG");
    let Some(include) = libjpeg_include() else {
        if std::env::var("SAMIX_REQUIRE_LIBJPEG").is_ok_and(|v| v == "1") {
            panic!("SAMIX_REQUIRE_LIBJPEG=1 but no jpeglib.h was found: install libjpeg-turbo's development files (Debian: libjpeg62-turbo-dev) or set SAMIX_LIBJPEG_INCLUDE");
        }
        println!("cargo:warning=no jpeglib.h found (install libjpeg62-turbo-dev): JPEGs will be decoded in full, without partial or downscaled decoding");
        return;
    };
    cc::Build::new().pic(true).include(&include).file("csrc/jpeg.c").compile("samix_jpeg");
    // A shared object (the Python extension, feature `shared-libjpeg`) cannot hold the static
    // library, which distributions build without -fPIC.
    let shared_only = std::env::var_os("CARGO_FEATURE_SHARED_LIBJPEG").is_some();
    let static_lib = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
        .iter()
        .map(PathBuf::from)
        .find(|d| !shared_only && d.join("libjpeg.a").exists());
    match static_lib {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=jpeg");
        }
        None => println!("cargo:rustc-link-lib=dylib=jpeg"),
    }
    println!("cargo:rustc-cfg=samix_libjpeg");
}

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=third_party/gloo");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    let lib = PathBuf::from(lib);
    let torch_dir = lib.parent().map(Path::to_path_buf).unwrap_or_default();
    let has_cuda = lib.join("libtorch_cuda.so").exists();

    let mut shim = cc::Build::new();
    shim.cpp(true)
        .pic(true)
        .warnings(false)
        .include(torch_dir.join("include"))
        .include(torch_dir.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .include("third_party/gloo/include")
        .define("USE_C10D_GLOO", None)
        .file("csrc/shim.cpp")
        .file("csrc/dist.cpp");
    let cuda_headers = if has_cuda { cuda_includes(&torch_dir) } else { None };
    if let Some(dirs) = &cuda_headers {
        shim.includes(dirs).define("SAMIX_WITH_CUDA", None);
    } else if has_cuda {
        println!("cargo:warning=libtorch has CUDA but no CUDA headers were found (set CUDA_HOME): building without CUDA graphs and GPU memory statistics");
    }
    shim.compile("samix_shim");
    build_jpeg();

    println!("cargo:rustc-link-search=native={}", lib.display());
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        if cuda_headers.is_some() {
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
        }
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

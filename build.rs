//! Gives the shared library a SONAME, so that hosts linked against it record the ABI
//! version they need (`libstickless.so.1`, after `STICKLESS_ABI_VERSION`), and puts
//! a `libstickless.so.1` link beside the library cargo builds, so that a host linked
//! against `target/release` (with an rpath there) runs without installing it.

use std::path::{Path, PathBuf};

const SONAME: &str = "libstickless.so.1";

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME}");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = profile_dir() {
        link_soname(&dir);
    }
}

/// `target/<profile>` (or `target/<triple>/<profile>`), where cargo leaves the
/// cdylib: three levels above this script's `OUT_DIR` (`<profile>/build/<pkg>/out`).
fn profile_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    Some(out.ancestors().nth(3)?.to_path_buf())
}

/// A relative link, made before the library exists (it dangles until cargo links
/// it); an existing file of that name is left alone.
fn link_soname(dir: &Path) {
    let link = dir.join(SONAME);
    if link.symlink_metadata().is_err() {
        // Best effort: a read-only target directory only loses the convenience.
        let _ = std::os::unix::fs::symlink("libstickless.so", &link);
    }
}

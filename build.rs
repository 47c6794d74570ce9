//! Gives the shared library a SONAME, so that hosts linked against it record the ABI
//! version they need (`libstickless.so.1`, after `STICKLESS_ABI_VERSION`).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libstickless.so.1");
    println!("cargo:rerun-if-changed=build.rs");
}

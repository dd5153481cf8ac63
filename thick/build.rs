// The daemon runs on the image's glibc (2.36+), so its relative
// relocations can be packed (DT_RELR): 1.2 MB of .rela.dyn that ld.so
// reads at start, and that stays resident, becomes a few KB. The shim runs
// on the host's glibc, of any age, so it keeps the classic format.
fn main() {
    println!("cargo:rustc-link-arg-bin=multus-daemon=-Wl,-z,pack-relative-relocs");
}

//! Records the target triple and build profile for the device fingerprint.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=AGENT_TARGET={target}");
    println!("cargo:rustc-env=AGENT_PROFILE={profile}");
}

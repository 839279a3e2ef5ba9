//! The ways Gantry installs, exercised for real: the Debian package (built with
//! cargo-deb from the test binary, checked with lintian, installed with dpkg,
//! its units verified, purged) and the binary's portability floor.
//!
//! These install into the machine, so they need root and the tools `.ci/run` sets
//! up (cargo-deb, lintian, systemd); missing tools fail with what to install.

use std::path::Path;
use std::process::Command;

const GANTRY: &str = env!("CARGO_BIN_EXE_gantry");

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap()
}

fn run(script: &str, args: &[&str]) -> String {
    let out = Command::new("bash").arg(workspace().join(script)).args(args).current_dir(workspace()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

#[test]
fn debian_package_builds_lints_installs_verifies_and_purges_clean() {
    let tool = |cmd: &[&str]| Command::new(cmd[0]).args(&cmd[1..]).output().is_ok_and(|o| o.status.success());
    assert!(
        tool(&["cargo", "deb", "--version"]),
        "cargo-deb is missing: cargo install --locked cargo-deb (bash .ci/run does)"
    );
    assert!(tool(&["lintian", "--version"]), "lintian is missing: apt-get install lintian (bash .ci/run does)");
    assert!(tool(&["systemd-analyze", "--version"]), "systemd-analyze is missing: apt-get install systemd");
    // The package carries the binary this test suite was built with.
    let target = Path::new(GANTRY).parent().unwrap().parent().unwrap();
    let built = run("deploy/debian/build.sh", &["--profile", "dev", "--no-build", "--fast"]);
    let version = env!("CARGO_PKG_VERSION");
    let deb = target.join(format!("debian/gantry_{version}-1_amd64.deb"));
    assert!(deb.exists(), "no {}:\n{built}", deb.display());
    let checked = run("deploy/debian/test.sh", &[deb.to_str().unwrap()]);
    assert!(checked.contains("deb OK"), "{checked}");
}

/// The portable binary's promise: it needs nothing but glibc (no OpenSSL, no NVML:
/// the driver library is opened at run time) and no glibc symbol newer than 2.34,
/// so it runs on every glibc distribution of the last five years (RHEL 9, Ubuntu
/// 22.04, Debian 12 and newer). The dist build links the same libraries and symbols.
#[test]
fn the_binary_needs_only_glibc_2_34() {
    let out = Command::new("objdump").args(["-p", GANTRY]).output().expect("objdump (binutils) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("NEEDED")).map(str::trim).collect();
    let allowed = [
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
    ];
    for lib in &needed {
        assert!(allowed.contains(lib), "the binary links {lib}; only glibc's own libraries are allowed ({needed:?})");
    }
    let out = Command::new("objdump").args(["-T", GANTRY]).output().unwrap();
    let symbols = String::from_utf8_lossy(&out.stdout);
    let newest = symbols
        .split_whitespace()
        .filter_map(|w| w.trim_matches(|c| c == '(' || c == ')').strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("the binary uses versioned glibc symbols");
    assert!(newest <= (2, 34), "the binary needs glibc {}.{}; the floor is 2.34", newest.0, newest.1);
    assert!(!text.contains("libnvidia-ml"), "NVML must be loaded at run time, not linked");
}

//! Build facts for `gantry version`: the git commit and the build date, taken once at
//! build time. A source tarball without git (or a packager that wants reproducible
//! builds) sets `GANTRY_GIT_COMMIT` and `SOURCE_DATE_EPOCH` instead.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GANTRY_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Rebuild the facts when HEAD moves (a commit, a checkout), not on every build.
    if let Some(head) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &reference])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = std::env::var("GANTRY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "HEAD"])?;
            // A build from a tree with uncommitted changes says so.
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            Some(if dirty { format!("{commit}-dirty") } else { commit })
        })
        .unwrap_or_else(|| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .or_else(|| git(&["log", "-1", "--format=%ct"]).and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    println!("cargo:rustc-env=GANTRY_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=GANTRY_BUILD_EPOCH={epoch}");
    println!("cargo:rustc-env=GANTRY_BUILD_FEATURES={}", features.join(","));
    println!("cargo:rustc-env=GANTRY_BUILD_TARGET={}", std::env::var("TARGET").unwrap_or_default());
    println!("cargo:rustc-env=GANTRY_BUILD_PROFILE={}", std::env::var("PROFILE").unwrap_or_default());
}

//! Images built locally, with no registry and no base image: a root file system
//! holding one static busybox (Debian's `busybox-static`) and its applets, imported
//! with `POST /images/create?fromSrc=-`. `gantry dev` builds its demo image this
//! way, and the tests build theirs, on machines that can reach no public registry.

use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

/// Where Debian's `busybox-static` (and most distributions) put the binary.
const BUSYBOX_PATHS: [&str; 3] = ["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"];

/// A busybox binary that needs no shared libraries, if the machine has one.
pub fn find_static_busybox() -> Option<PathBuf> {
    BUSYBOX_PATHS.iter().map(PathBuf::from).find(|p| std::fs::read(p).is_ok_and(|bytes| is_static_elf(&bytes)))
}

/// Whether an ELF64 executable has no program interpreter (a static binary).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    let read = |at: usize, len: usize| -> Option<u64> {
        let slice = bytes.get(at..at + len)?;
        Some(slice.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    // Magic, 64-bit, little-endian.
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (read(0x20, 8), read(0x36, 2), read(0x38, 2)) else {
        return false;
    };
    const PT_INTERP: u64 = 3;
    (0..phnum).all(|i| read((phoff + i * phentsize) as usize, 4).is_some_and(|kind| kind != PT_INTERP))
}

/// A root file system tar: `/bin/busybox`, a symlink per applet in `/bin`, `/tmp`.
pub fn busybox_rootfs(busybox: &Path) -> std::io::Result<Vec<u8>> {
    let binary = std::fs::read(busybox)?;
    let list = std::process::Command::new(busybox).arg("--list").output()?;
    let applets = String::from_utf8_lossy(&list.stdout).to_string();
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |name: &str, mode: u32, tar: &mut tar::Builder<Vec<u8>>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        tar.append_data(&mut h, name, std::io::empty())
    };
    dir("bin/", 0o755, &mut tar)?;
    dir("tmp/", 0o1777, &mut tar)?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(binary.len() as u64);
    tar.append_data(&mut h, "bin/busybox", &binary[..])?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    tar.into_inner()
}

/// Imports `rootfs` as `repo:tag` with Dockerfile-style `changes` (`CMD [...]`, `ENV K=V`).
pub async fn import(docker: &Docker, repo: &str, tag: &str, rootfs: Vec<u8>, changes: &[&str]) -> Result<(), String> {
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        changes: changes.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("cannot import {repo}:{tag}: {e}"))?;
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            return Err(format!("cannot import {repo}:{tag}: {message}"));
        }
    }
    Ok(())
}

/// Builds `repo:tag` from the machine's static busybox. It runs the `SCRIPT`
/// environment variable with `sh` when set, else `default_script`.
/// The error says what to install when there is no static busybox.
pub async fn build_busybox_image(docker: &Docker, repo: &str, tag: &str, default_script: &str) -> Result<(), String> {
    let busybox = find_static_busybox().ok_or_else(|| {
        format!(
            "no static busybox found (looked in {}); install Debian's busybox-static (apt-get install busybox-static)",
            BUSYBOX_PATHS.join(", ")
        )
    })?;
    let rootfs = busybox_rootfs(&busybox).map_err(|e| format!("cannot pack {}: {e}", busybox.display()))?;
    // Exec-form CMD: nothing is substituted at build time, so the script sees the
    // container's environment when it runs.
    let command = format!("if [ -n \"$SCRIPT\" ]; then eval \"$SCRIPT\"; else {default_script}; fi");
    let cmd = format!("CMD {}", serde_json::json!(["/bin/sh", "-c", command]));
    import(docker, repo, tag, rootfs, &["ENV PATH=/bin", &cmd]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_static_and_dynamic_elves() {
        // A minimal ELF64 header with one PT_LOAD program header: static.
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        elf[0x20] = 0x40; // phoff
        elf[0x36] = 0x38; // phentsize
        elf[0x38] = 1; // phnum
        elf[0x40] = 1; // PT_LOAD
        assert!(is_static_elf(&elf));
        elf[0x40] = 3; // PT_INTERP
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        if let Ok(sh) = std::fs::read("/bin/sh") {
            assert!(!is_static_elf(&sh), "/bin/sh is dynamically linked on Debian");
        }
    }
}

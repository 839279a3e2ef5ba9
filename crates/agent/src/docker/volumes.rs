//! `volumes[]`: the file tree of an image made available at `mount` in the job's
//! container.
//!
//! The daemons nodes run (Docker 20.10, API 1.41) have no image mounts, and a bind
//! mount would mean a host path, which jobs never get. So the tree is copied in,
//! entirely through the Docker API: a never-started container of the volume image is
//! exported as a tar stream and uploaded into the job's container (created, not yet
//! started) at `mount`. Nothing touches the node's file system outside Docker, the
//! copy is private to the run, and it goes when the container goes.

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptions, UploadToContainerOptions};
use futures_util::TryStreamExt;

/// A tar holding just the directories of `path` (so the upload has somewhere to go).
pub fn directory_tar(path: &str) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut so_far = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        so_far.push_str(part);
        so_far.push('/');
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder.append_data(&mut header, &so_far, std::io::empty()).map_err(|e| e.to_string())?;
    }
    builder.into_inner().map_err(|e| e.to_string())
}

/// Copies the file tree of `image` (already pulled) into `container` at `mount`.
pub async fn copy_image_tree(
    docker: &Docker,
    container: &str,
    source_name: &str,
    image: &str,
    mount: &str,
    labels: std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let fail = |what: &str, e: bollard::errors::Error| format!("volume {image} at {mount}: {what}: {e}");
    // A container is needed to export a file tree; it is never started, so the image
    // needs no command of its own.
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["/gantry-volume-source".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: Some(source_name.to_string()), ..Default::default() };
    let source = match docker.create_container(Some(options), body).await {
        Ok(created) => created.id,
        // A leftover from an interrupted attempt: reuse it.
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => source_name.to_string(),
        Err(e) => return Err(fail("cannot create its source container", e)),
    };
    let result = async {
        let dirs = directory_tar(mount)?;
        let at_root = UploadToContainerOptions { path: "/".into(), ..Default::default() };
        docker
            .upload_to_container(container, Some(at_root), bollard::body_full(dirs.into()))
            .await
            .map_err(|e| fail("cannot create the mount directory", e))?;
        let tree = docker.export_container(&source).map_err(std::io::Error::other);
        let at_mount = UploadToContainerOptions { path: mount.to_string(), ..Default::default() };
        docker
            .upload_to_container(container, Some(at_mount), bollard::body_try_stream(tree))
            .await
            .map_err(|e| fail("cannot copy its files", e))
    }
    .await;
    if let Err(e) = super::force_remove(docker, &source).await {
        tracing::warn!(error = %e, source = %source_name, "cannot remove a volume source container; the orphan sweep will");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_tar_lists_every_level() {
        let bytes = directory_tar("/data/models/").unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["data/", "data/models/"]);
    }
}

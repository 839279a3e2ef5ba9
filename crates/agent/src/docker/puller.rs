//! Pulls through the Docker daemon, summing per-layer progress into one figure.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::pull::{Progress, Puller, RegistryAuth};

/// The daemon's `POST /images/create`.
pub struct DockerPuller {
    /// The client.
    pub docker: Docker,
}

#[async_trait]
impl Puller for DockerPuller {
    async fn pull(&self, reference: &str, auth: Option<&RegistryAuth>, progress: Progress) -> Result<(), String> {
        let (image, tag) = split_reference(reference);
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            tag: tag.map(str::to_string),
            ..Default::default()
        };
        let credentials = auth.map(|a| DockerCredentials {
            username: Some(a.user.clone()),
            password: Some(a.secret.clone()),
            serveraddress: a.host.clone(),
            ..Default::default()
        });
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                bollard::errors::Error::DockerStreamError { error } => error,
                other => other.to_string(),
            })?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(message);
            }
            let (Some(layer), Some(status)) = (info.id, info.status) else { continue };
            let detail = info.progress_detail.unwrap_or_default();
            let entry = layers.entry(layer).or_default();
            match status.as_str() {
                "Downloading" => {
                    let total = detail.total.unwrap_or(0).max(0) as u64;
                    *entry = (detail.current.unwrap_or(0).max(0) as u64, total.max(entry.1));
                }
                "Download complete" | "Pull complete" | "Already exists" => entry.0 = entry.1,
                _ => continue,
            }
            let (done, total) = layers.values().fold((0, 0), |(d, t), (ld, lt)| (d + ld, t + lt));
            progress(done, total);
        }
        Ok(())
    }
}

/// `host:5000/a/b:tag` → (`host:5000/a/b`, `tag`); a digest stays in the image part.
fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => (&reference[..slash + colon], Some(&reference[slash + colon + 1..])),
        None => (reference, None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_split_at_the_tag_not_the_port() {
        use super::split_reference;
        assert_eq!(split_reference("127.0.0.1:5000/t/img:1"), ("127.0.0.1:5000/t/img", Some("1")));
        assert_eq!(split_reference("127.0.0.1:5000/t/img"), ("127.0.0.1:5000/t/img", None));
        assert_eq!(split_reference("busybox:latest"), ("busybox", Some("latest")));
        assert_eq!(split_reference("img@sha256:ab"), ("img@sha256:ab", None));
    }
}

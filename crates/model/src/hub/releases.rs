//! The released checkpoints: which repository and file each model lives in, and the
//! checksums docs/REFERENCE.md records.

use super::{HubError, DEFAULT_REVISION};
use crate::config::{Encoder, Metric, Version};

/// The size word used in the V2 repo names (`Small`, ...).
fn size_word(encoder: Encoder) -> &'static str {
    match encoder {
        Encoder::Vits => "Small",
        Encoder::Vitb => "Base",
        Encoder::Vitl => "Large",
        Encoder::Vitg => "Giant",
    }
}

/// Kind of hub repository a file lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoType {
    /// A model repository (`{endpoint}/{repo}/...`).
    Model,
    /// A Space (`{endpoint}/spaces/{repo}/...`); the V1 `.pth` files live in one.
    Space,
}

impl RepoType {
    /// URL path prefix before the repo id.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Space => "spaces/",
        }
    }

    /// Plural used in the cache folder name, as `huggingface_hub` spells it.
    fn cache_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Space => "spaces",
        }
    }
}

/// One file on the hub, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// Model repository or Space.
    pub repo_type: RepoType,
    /// Repository id, `org/name`.
    pub repo: String,
    /// Path of the file inside the repository (may contain `/`).
    pub filename: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Expected sha256 (lowercase hex); `None` takes it from the hub's `X-Linked-Etag`.
    pub sha256: Option<String>,
    /// Expected size in bytes, when known.
    pub size: Option<u64>,
}

impl HubFile {
    /// A file of a model repository at [`DEFAULT_REVISION`], with no known checksum.
    pub fn model(repo: impl Into<String>, filename: impl Into<String>) -> Self {
        HubFile {
            repo_type: RepoType::Model,
            repo: repo.into(),
            filename: filename.into(),
            revision: DEFAULT_REVISION.to_string(),
            sha256: None,
            size: None,
        }
    }

    /// The download URL on `endpoint`: `{endpoint}/{repo}/resolve/{revision}/{filename}`.
    pub fn url(&self, endpoint: &str) -> String {
        format!(
            "{}/{}{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            self.repo_type.url_prefix(),
            self.repo,
            percent_encode(&self.revision, false),
            percent_encode(&self.filename, true),
        )
    }

    /// The repository's folder in the cache: `models--{org}--{name}`.
    pub fn cache_folder(&self) -> String {
        let mut name = self.repo_type.cache_prefix().to_string();
        for part in self.repo.split('/') {
            name.push_str("--");
            name.push_str(part);
        }
        name
    }

    /// Checks that the spec cannot escape the cache and that the sha256 is well formed.
    pub(super) fn validate(&self) -> Result<(), HubError> {
        let invalid = |what, value: &str| HubError::Invalid {
            what,
            value: value.to_string(),
        };
        let repo_parts: Vec<&str> = self.repo.split('/').collect();
        if repo_parts.len() > 2 || !repo_parts.iter().all(|p| is_safe_component(p)) {
            return Err(invalid("hub repository id", &self.repo));
        }
        if !self.filename.split('/').all(is_safe_component) {
            return Err(invalid("hub file name", &self.filename));
        }
        if !self.revision.split('/').all(is_safe_component) {
            return Err(invalid("hub revision", &self.revision));
        }
        if let Some(sha) = &self.sha256 {
            if !is_sha256(sha) {
                return Err(invalid("sha256", sha));
            }
        }
        Ok(())
    }
}

/// A path component that stays where it is put (no `..`, no separators, not empty).
pub(super) fn is_safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0', ':'])
}

/// 64 hex digits.
pub(super) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
pub(super) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The hub file holding the official checkpoint for `version`, `encoder` and `kind`.
///
/// V2 files live in the `depth-anything` organisation. The V1 `.pth` files live in the
/// `LiheYoung/Depth-Anything` Space under `checkpoints/` (the `LiheYoung/depth_anything_*14`
/// model repos hold `pytorch_model.bin` for `from_pretrained` instead). The sha256 and size
/// are filled in where docs/REFERENCE.md records them; the others come from the hub.
///
/// # Errors
/// [`HubError::NotPublished`] for combinations that were never released: any Giant
/// checkpoint, and V1 metric models (those are ZoeDepth networks, not Depth Anything heads).
pub fn released(
    version: Version,
    encoder: Encoder,
    kind: Option<Metric>,
) -> Result<HubFile, HubError> {
    let enc = encoder.name();
    let not_published = |what: String, note| Err(HubError::NotPublished { what, note });
    if encoder == Encoder::Vitg {
        return not_published(
            format!("Depth Anything {version:?} Giant ({})", kind_words(kind)),
            "",
        );
    }
    let mut file = match (version, kind) {
        (Version::V1, None) => HubFile {
            repo_type: RepoType::Space,
            ..HubFile::model(
                "LiheYoung/Depth-Anything",
                format!("checkpoints/depth_anything_{enc}14.pth"),
            )
        },
        (Version::V1, _) => {
            return not_published(
                format!("Depth Anything V1 {}", kind_words(kind)),
                "; V1's metric models are ZoeDepth networks, which this crate does not run",
            );
        }
        (Version::V2, None) => HubFile::model(
            format!("depth-anything/Depth-Anything-V2-{}", size_word(encoder)),
            format!("depth_anything_v2_{enc}.pth"),
        ),
        (Version::V2, Some(_)) => {
            let (repo_word, file_word) = if kind == Some(Metric::Indoor) {
                ("Hypersim", "hypersim")
            } else {
                ("VKITTI", "vkitti")
            };
            HubFile::model(
                format!(
                    "depth-anything/Depth-Anything-V2-Metric-{repo_word}-{}",
                    size_word(encoder)
                ),
                format!("depth_anything_v2_metric_{file_word}_{enc}.pth"),
            )
        }
    };
    if let Some((sha256, size)) = known_checksum(version, encoder, kind) {
        file.sha256 = Some(sha256.to_string());
        file.size = size;
    }
    Ok(file)
}

/// The released Video Depth Anything checkpoint with `encoder` (S, B or L), relative or
/// `metric`. Checksums come from the hub.
///
/// # Errors
/// [`HubError::NotPublished`] for a Giant model, which was never released.
pub fn released_video(encoder: Encoder, metric: bool) -> Result<HubFile, HubError> {
    let enc = encoder.name();
    let (repo_word, file_word) = if metric {
        ("Metric-", "metric_")
    } else {
        ("", "")
    };
    if encoder == Encoder::Vitg {
        return Err(HubError::NotPublished {
            what: format!("{repo_word}Video Depth Anything Giant"),
            note: "",
        });
    }
    Ok(HubFile::model(
        format!(
            "depth-anything/{repo_word}Video-Depth-Anything-{}",
            size_word(encoder)
        ),
        format!("{file_word}video_depth_anything_{enc}.pth"),
    ))
}

/// The released Depth Anything 3 weights of `model` (`model.safetensors` of its
/// repository; the checksum comes from the hub). The repository's `config.json` only
/// names the model, which the caller knows already.
pub fn released_da3(model: crate::da3::Da3Model) -> HubFile {
    HubFile::model(model.hub_repo(), "model.safetensors")
}

/// sha256 (and size) of the released files docs/REFERENCE.md records.
fn known_checksum(
    version: Version,
    encoder: Encoder,
    kind: Option<Metric>,
) -> Option<(&'static str, Option<u64>)> {
    match (version, encoder, kind) {
        (Version::V2, Encoder::Vits, None) => Some((
            "715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378",
            Some(99_218_434),
        )),
        (Version::V2, Encoder::Vits, Some(Metric::Outdoor)) => Some((
            "9203e538d35255c90dda4b7fedb47ff33fe725497bcca3b1e53b3a65ee63f0cb",
            None,
        )),
        (Version::V1, Encoder::Vits, None) => Some((
            "59afe57cfd9f4284deaf5b753d954723d7136ae842fba3e068ba03537ca1e60e",
            Some(99_219_880),
        )),
        _ => None,
    }
}

/// `kind` in words, for messages.
fn kind_words(kind: Option<Metric>) -> &'static str {
    match kind {
        None => "relative depth",
        Some(Metric::Indoor) => "metric indoor (Hypersim)",
        Some(Metric::Outdoor) => "metric outdoor (VKITTI)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn da3_weights_come_from_the_depth_anything_organisation() {
        let file = released_da3(crate::da3::Da3Model::MetricLarge);
        assert_eq!(file.repo, "depth-anything/DA3METRIC-LARGE");
        assert_eq!(file.filename, "model.safetensors");
        assert!(file.validate().is_ok());
    }
}

//! `fuse` of photos with Depth Anything 3 weights: one network run gives every photo's
//! depth and camera (or takes the given poses), and the confident pixels are fused in the
//! same TSDF path as other views.

use anydepth_core::depth::{DepthMap, Metres};
use anydepth_core::{load_image, Prediction};
use anydepth_geometry::fusion::{View, ViewReport};
use anydepth_model::da3::{Da3Model, RefViewStrategy, ViewsInput};
use anydepth_model::EngineLoader;

use super::{FuseObserver, FuseOutcome, FuseRequest, DEFAULT_MAX_DEPTH_M, DEFAULT_VOXEL_SIZE_M};
use crate::error::{bail, Context, Result};
use crate::model::Da3ModelRequest;
use crate::shape::ViewCamera;
use crate::views::{confidence_threshold, given_cameras, to_photos};
use crate::{sources, Downloads, Notes};

/// Voxels are this fraction of the median depth when the depth has no units.
const VOXELS_PER_MEDIAN_DEPTH: f32 = 250.0;
/// Depth beyond this many median depths is left out when the depth has no units.
const MAX_DEPTH_IN_MEDIANS: f32 = 4.0;

impl FuseRequest {
    /// The Depth Anything 3 model `--weights` holds, if it is one.
    pub(super) fn da3_weights(&self) -> Option<Da3Model> {
        if self.photos.is_empty() {
            return None;
        }
        anydepth_model::da3::checkpoint_model(self.model.weights.as_deref()?)
    }

    /// Fuses photos with a Depth Anything 3 any-view model.
    pub(super) fn run_da3(
        &self,
        model: Da3Model,
        loader: &dyn EngineLoader,
        observer: &dyn FuseObserver,
    ) -> Result<FuseOutcome> {
        self.check_outputs()?;
        if !model.is_any_view() {
            bail!(
                "{model} gives no cameras: fuse photos with an any-view Depth Anything 3 model \
                 (da3-small, da3-base, da3-large, da3-giant)"
            );
        }
        if self.refine_poses || self.align_views || self.values.scale.is_some() {
            bail!(
                "--refine-poses, --align-views and --scale do not apply to Depth Anything 3: \
                 one network run gives every view's depth and camera in one scale"
            );
        }
        anydepth_model::da3::check_process_res(self.process_res)?;
        if let Some(c) = self.conf_threshold {
            anydepth_model::da3::check_conf_threshold(c)?;
        }
        // The volume's parameters are checked before the network runs (the defaults that
        // depend on its depth are valid whatever it is).
        self.fusion(
            self.voxel_size.unwrap_or(DEFAULT_VOXEL_SIZE_M),
            self.max_depth.unwrap_or(DEFAULT_MAX_DEPTH_M),
        )?;
        let photos = sources::expand_images(&self.photos)?.files;
        let images = photos
            .iter()
            .map(|p| load_image(p).with_context(|| format!("cannot read {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        let notes: Notes = &|message| observer.note(message);
        let given = match &self.poses {
            Some(path) => Some(given_cameras(
                path,
                self.pose_format,
                &self.camera,
                &photos,
                &images,
                notes,
            )?),
            None => None,
        };
        observer.start().map_err(crate::Error::Observer)?;
        let request = Da3ModelRequest::from_weights(&self.model, model);
        let downloads: Downloads = &mut |file, done, total| observer.download(file, done, total);
        let engine = request.load(loader, downloads)?;
        let output = engine.run(&ViewsInput {
            photos: &images,
            process_res: self.process_res,
            strategy: RefViewStrategy::default(),
            cameras: given.as_deref(),
            intrinsics: None,
        })?;
        let result = to_photos(photos, images, output)?;
        let threshold = confidence_threshold(&result, self.conf_threshold);

        // Without poses the depth has the network's own scale: size the volume by it.
        let median = median_depth(&result.views);
        let (voxel_size, max_depth) = if self.poses.is_some() {
            (
                self.voxel_size.unwrap_or(DEFAULT_VOXEL_SIZE_M),
                self.max_depth.unwrap_or(DEFAULT_MAX_DEPTH_M),
            )
        } else {
            (
                self.voxel_size.unwrap_or(median / VOXELS_PER_MEDIAN_DEPTH),
                self.max_depth.unwrap_or(median * MAX_DEPTH_IN_MEDIANS),
            )
        };
        if self.poses.is_none() && (self.voxel_size.is_none() || self.max_depth.is_none()) {
            observer.note(&format!(
                "no poses: depth is in the network's units (median {median:.3}); voxels of \
                 {voxel_size:.4}, depth up to {max_depth:.3}"
            ));
        }
        let mut fusion = self.fusion(voxel_size, max_depth)?;
        let (reports, cameras) = fuse_views(&mut fusion, &result, threshold, observer)?;
        self.finish(fusion, reports, &cameras, voxel_size)
    }
}

/// Integrates every view's confident depth at its camera; returns the reports and the
/// cameras used.
fn fuse_views(
    fusion: &mut anydepth_geometry::fusion::Fusion,
    result: &crate::views::ViewsResult,
    threshold: Option<f32>,
    observer: &dyn FuseObserver,
) -> Result<(Vec<ViewReport>, Vec<ViewCamera>)> {
    observer.frames(result.views.len());
    let mut reports = Vec::with_capacity(result.views.len());
    let mut cameras = Vec::with_capacity(result.views.len());
    for (index, view) in result.views.iter().enumerate() {
        observer.item(&view.path.display().to_string());
        let Some(camera) = view.camera.clone() else {
            bail!("{} got no camera", view.path.display());
        };
        let prediction = Prediction::Metric(DepthMap::<Metres>::new(
            view.image.width,
            view.image.height,
            confident_depth(view, threshold),
        )?);
        let colors = view.image.to_rgb8();
        observer
            .view(index, None, Some(&colors), &prediction)
            .map_err(crate::Error::Observer)?;
        let report = fusion
            .add_view(View {
                depth: prediction,
                colors: Some(colors),
                camera: camera.intrinsics,
                world_from_camera: Some(camera.world_from_camera),
                scale: None,
            })
            .with_context(|| format!("view {} ({})", index + 1, view.path.display()))?;
        observer
            .camera(&camera.intrinsics, &report.world_from_camera)
            .map_err(crate::Error::Observer)?;
        cameras.push(ViewCamera {
            intrinsics: camera.intrinsics,
            world_from_camera: report.world_from_camera,
        });
        reports.push(report);
        observer.advance();
    }
    Ok((reports, cameras))
}

/// A view's depth with pixels under the confidence threshold (and unknown ones) at 0.
fn confident_depth(view: &crate::views::PhotoView, threshold: Option<f32>) -> Vec<f32> {
    view.depth
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let confident = match (&view.confidence, threshold) {
                (Some(conf), Some(t)) => conf[i] >= t,
                _ => true,
            };
            if confident && d.is_finite() {
                d
            } else {
                0.0
            }
        })
        .collect()
}

/// The median of every view's finite, positive depth (1 when there is none).
fn median_depth(views: &[crate::views::PhotoView]) -> f32 {
    let mut all: Vec<f32> = views
        .iter()
        .flat_map(|v| v.depth.iter().copied())
        .filter(|d| d.is_finite() && *d > 0.0)
        .collect();
    if all.is_empty() {
        return 1.0;
    }
    let middle = all.len() / 2;
    *all.select_nth_unstable_by(middle, f32::total_cmp).1
}

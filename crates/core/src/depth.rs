//! Depth maps typed by what their values mean.

use std::marker::PhantomData;

use crate::error::{Error, Result};

/// What the values of a [`DepthMap`] mean.
pub trait ValueKind: Copy + std::fmt::Debug + Default + Send + Sync + 'static {
    /// Short name used in messages and file metadata.
    const NAME: &'static str;
}

/// Affine-invariant inverse depth, as predicted by relative models: larger is closer, and
/// `1 / depth = s * disparity + t` holds only for an unknown scale `s` and shift `t`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disparity;

/// Metric depth along the optical axis (z), in metres.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metres;

/// Depth along the optical axis up to an unknown scale, as Depth Anything 3's relative
/// models predict it: positive, larger is farther, `metres = s * depth` for one unknown `s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelativeDepth;

impl ValueKind for RelativeDepth {
    const NAME: &'static str = "depth";
}

impl ValueKind for Disparity {
    const NAME: &'static str = "disparity";
}

impl ValueKind for Metres {
    const NAME: &'static str = "metres";
}

/// A dense `width x height` map of `f32` values, row-major, whose meaning is `K`.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthMap<K: ValueKind> {
    width: u32,
    height: u32,
    data: Vec<f32>,
    kind: PhantomData<K>,
}

impl<K: ValueKind> DepthMap<K> {
    /// Wraps row-major values.
    ///
    /// # Errors
    /// When `data.len() != width * height`.
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Result<Self> {
        let expected = width as usize * height as usize;
        if data.len() != expected {
            return Err(Error::Size {
                what: K::NAME,
                width,
                height,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
            kind: PhantomData,
        })
    }

    /// Width in pixels (values per row).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels (rows).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the map, returning its row-major values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Consumes the map, returning `(width, height, row-major values)`.
    pub fn into_parts(self) -> (u32, u32, Vec<f32>) {
        (self.width, self.height, self.data)
    }

    /// The value at column `x`, row `y`.
    ///
    /// # Panics
    /// When `(x, y)` lies outside the map.
    pub fn get(&self, x: u32, y: u32) -> f32 {
        assert!(x < self.width && y < self.height, "pixel outside the map");
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// Smallest and largest finite values, `None` when there are none.
    pub fn finite_range(&self) -> Option<(f32, f32)> {
        finite_range(&self.data)
    }
}

/// Smallest and largest finite values of `values`, `None` when there are none.
pub fn finite_range(values: &[f32]) -> Option<(f32, f32)> {
    values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// What a depth model returns for one image: disparity for Depth Anything V1/V2's
/// relative models, depth up to scale for Depth Anything 3's, metres for metric ones.
#[derive(Clone, Debug, PartialEq)]
pub enum Prediction {
    /// Affine-invariant disparity, from a relative model.
    Disparity(DepthMap<Disparity>),
    /// Depth up to an unknown scale, from a Depth Anything 3 relative model.
    RelativeDepth(DepthMap<RelativeDepth>),
    /// Depth in metres, from a metric model.
    Metric(DepthMap<Metres>),
}

impl Prediction {
    /// Width of the map, in pixels.
    pub fn width(&self) -> u32 {
        match self {
            Self::Disparity(d) => d.width(),
            Self::RelativeDepth(d) => d.width(),
            Self::Metric(d) => d.width(),
        }
    }

    /// Height of the map, in pixels.
    pub fn height(&self) -> u32 {
        match self {
            Self::Disparity(d) => d.height(),
            Self::RelativeDepth(d) => d.height(),
            Self::Metric(d) => d.height(),
        }
    }

    /// Raw row-major values, whatever they mean.
    pub fn values(&self) -> &[f32] {
        match self {
            Self::Disparity(d) => d.data(),
            Self::RelativeDepth(d) => d.data(),
            Self::Metric(d) => d.data(),
        }
    }

    /// `"disparity"`, `"depth"` or `"metres"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Disparity(_) => Disparity::NAME,
            Self::RelativeDepth(_) => RelativeDepth::NAME,
            Self::Metric(_) => Metres::NAME,
        }
    }

    /// The prediction by whether its scale is known: relative predictions as disparity
    /// (Depth Anything 3's relative depth as its reciprocal, 0 where the depth is not
    /// positive), which is what affine-invariant evaluation and alignment work on, or
    /// metres.
    pub fn by_scale(self) -> ByScale {
        match self {
            Self::Disparity(d) => ByScale::Relative(d),
            Self::RelativeDepth(d) => {
                let (w, h, values) = d.into_parts();
                let inverse = values
                    .into_iter()
                    .map(|v| {
                        if v > 0.0 && v.is_finite() {
                            1.0 / v
                        } else {
                            0.0
                        }
                    })
                    .collect();
                ByScale::Relative(DepthMap {
                    width: w,
                    height: h,
                    data: inverse,
                    kind: PhantomData,
                })
            }
            Self::Metric(d) => ByScale::Metric(d),
        }
    }
}

/// A [`Prediction`] by whether its scale is known ([`Prediction::by_scale`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ByScale {
    /// Relative: disparity, up to scale and shift.
    Relative(DepthMap<Disparity>),
    /// Metric depth.
    Metric(DepthMap<Metres>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_checked() {
        assert!(DepthMap::<Metres>::new(3, 2, vec![0.0; 5]).is_err());
        let map = DepthMap::<Metres>::new(3, 2, (0..6).map(|v| v as f32).collect())
            .expect("6 values for 3 x 2");
        assert_eq!(map.get(2, 1), 5.0);
        assert_eq!(map.finite_range(), Some((0.0, 5.0)));
    }
}

//! Helpers shared by the trajectory readers: error positions, data lines, numbers,
//! quaternions and rigid 4x4 matrices, with the validation the [module docs](super) describe.

use std::path::Path;
use std::str::FromStr;

use nalgebra::{Isometry3, Matrix3, Matrix4, Quaternion, Rotation3, Translation3, UnitQuaternion};

use crate::error::{Error, Result};

/// How far a quaternion's norm may be from 1 before it is refused rather than normalised.
const QUATERNION_NORM_TOLERANCE: f64 = 1e-2;
/// How far the last row of a 4x4 matrix may be from `0 0 0 1`.
const LAST_ROW_TOLERANCE: f64 = 1e-6;
/// How far `R^T R` may be from the identity (element-wise): Redwood's `.log` files print six
/// significant digits, which leaves about 2e-6.
const ORTHONORMAL_TOLERANCE: f64 = 1e-4;

/// The file a trajectory is read from, for error messages.
pub(super) struct Source<'a> {
    pub(super) what: &'static str,
    pub(super) path: &'a Path,
}

impl Source<'_> {
    /// An error at `line` (1-based).
    pub(super) fn at(&self, line: usize, reason: impl Into<String>) -> Error {
        Error::FileLine {
            what: self.what,
            line,
            reason: reason.into(),
            path: self.path.to_path_buf(),
        }
    }

    /// An error about the whole file.
    pub(super) fn whole(&self, reason: impl Into<String>) -> Error {
        Error::FileFormat {
            what: self.what,
            reason: reason.into(),
            path: self.path.to_path_buf(),
        }
    }
}

pub(super) fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        reason: format!("cannot read {what}: {e}"),
        path: path.to_path_buf(),
    })
}

/// The lines that hold data: `(1-based line number, whitespace-separated tokens)`, without
/// blank lines and `#` comments.
pub(super) fn data_lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        (!line.is_empty() && !line.starts_with('#'))
            .then(|| (i + 1, line.split_whitespace().collect()))
    })
}

pub(super) fn parse_number(token: &str) -> Result<f64, String> {
    let value: f64 = token
        .parse()
        .map_err(|_| format!("`{token}` is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("`{token}` is not a finite number"))
    }
}

/// Exactly `N` finite numbers laid out as `layout`.
pub(super) fn parse_numbers<const N: usize>(
    tokens: &[&str],
    layout: &str,
) -> Result<[f64; N], String> {
    if tokens.len() != N {
        return Err(format!(
            "expected {N} numbers ({layout}), found {} values",
            tokens.len()
        ));
    }
    let mut values = [0.0; N];
    for (value, token) in values.iter_mut().zip(tokens) {
        *value = parse_number(token)?;
    }
    Ok(values)
}

pub(super) fn parse_integer<T: FromStr>(token: &str, what: &str) -> Result<T, String> {
    token
        .parse()
        .map_err(|_| format!("{what} `{token}` is not a non-negative integer"))
}

/// A rotation from a quaternion `w + xi + yj + zk`, normalised when its norm is near 1.
pub(super) fn unit_quaternion(
    w: f64,
    x: f64,
    y: f64,
    z: f64,
) -> Result<UnitQuaternion<f64>, String> {
    let q = Quaternion::new(w, x, y, z);
    let norm = q.norm();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(format!("the quaternion has norm {norm}"));
    }
    if (norm - 1.0).abs() > QUATERNION_NORM_TOLERANCE {
        return Err(format!(
            "the quaternion has norm {norm:.6}, far from 1 (are its values in another order?)"
        ));
    }
    Ok(UnitQuaternion::from_quaternion(q))
}

/// Why a 4x4 matrix is not rigid, and the row (0..4) to blame.
pub(super) struct NotRigid {
    pub(super) row: usize,
    pub(super) reason: String,
}

/// A rigid transform from a 4x4 matrix, checked for rigidity.
pub(super) fn rigid_from_matrix(m: &Matrix4<f64>) -> Result<Isometry3<f64>, NotRigid> {
    let last = [m[(3, 0)], m[(3, 1)], m[(3, 2)], m[(3, 3)]];
    if last
        .iter()
        .zip([0.0, 0.0, 0.0, 1.0])
        .any(|(v, expected)| (v - expected).abs() > LAST_ROW_TOLERANCE)
    {
        return Err(NotRigid {
            row: 3,
            reason: format!("the last row is {last:?}, not [0, 0, 0, 1]: not a rigid transform"),
        });
    }
    let r: Matrix3<f64> = m.fixed_view::<3, 3>(0, 0).into_owned();
    let off = (r.transpose() * r - Matrix3::identity()).amax();
    if off > ORTHONORMAL_TOLERANCE {
        return Err(NotRigid {
            row: 0,
            reason: format!(
                "the rotation part is not orthonormal (|R^T R - I| = {off:.2e} > \
                 {ORTHONORMAL_TOLERANCE:e}): scaled or sheared?"
            ),
        });
    }
    let det = r.determinant();
    if det <= 0.0 {
        return Err(NotRigid {
            row: 0,
            reason: format!(
                "the rotation part has determinant {det:.6}: a reflection, not a rotation"
            ),
        });
    }
    // Shepperd's method is exact for any angle (180 degrees included); normalising the
    // quaternion absorbs the small non-orthonormality allowed above.
    let q = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(r));
    let rotation = UnitQuaternion::new_normalize(q.into_inner());
    let translation = Translation3::new(m[(0, 3)], m[(1, 3)], m[(2, 3)]);
    Ok(Isometry3::from_parts(translation, rotation))
}

//! 2D rotary position embedding for ViT tokens, as Depth Anything 3's encoder applies it
//! to queries and keys: half of each head's channels turn with the token's row, the other
//! half with its column.

use tch::{Kind, Tensor};

/// Cosines and sines of the rotary embedding for one token sequence, each
/// `(1, 1, tokens, head_dim / 2)`: the first half of a head's channels turns with the
/// token's row, the second with its column.
#[derive(Debug)]
pub(crate) struct RopeTables {
    cos_y: Tensor,
    sin_y: Tensor,
    cos_x: Tensor,
    sin_x: Tensor,
}

impl RopeTables {
    /// Tables for tokens at `(row, column)` positions `rows`, `cols` (`(tokens,)` int64),
    /// with frequencies `1 / base^(2j / (head_dim / 2))`.
    pub(crate) fn new(rows: &Tensor, cols: &Tensor, head_dim: i64, base: f64, kind: Kind) -> Self {
        let half = head_dim / 2;
        let device = rows.device();
        // inv_freq = 1 / base^(2j / half), j < half / 2, in fp32; angles repeated twice.
        let exponents = Tensor::arange_start_step(0, half, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / half as f64;
        let inv_freq = Tensor::pow_scalar(base, &exponents).reciprocal();
        let table = |pos: &Tensor| {
            let angles = pos.to_kind(Kind::Float).unsqueeze(1) * inv_freq.unsqueeze(0);
            let angles = Tensor::cat(&[&angles, &angles], -1).to_kind(kind);
            (
                angles.cos().unsqueeze(0).unsqueeze(0),
                angles.sin().unsqueeze(0).unsqueeze(0),
            )
        };
        let (cos_y, sin_y) = table(rows);
        let (cos_x, sin_x) = table(cols);
        Self {
            cos_y,
            sin_y,
            cos_x,
            sin_x,
        }
    }

    /// `t` (`(batch, heads, tokens, head_dim)`) rotated by its tokens' positions.
    pub(crate) fn apply(&self, t: &Tensor) -> Tensor {
        let halves = t.chunk(2, -1);
        let rotate = |x: &Tensor, cos: &Tensor, sin: &Tensor| {
            let parts = x.chunk(2, -1);
            let turned = Tensor::cat(&[parts[1].neg(), parts[0].shallow_clone()], -1);
            x * cos + turned * sin
        };
        Tensor::cat(
            &[
                rotate(&halves[0], &self.cos_y, &self.sin_y),
                rotate(&halves[1], &self.cos_x, &self.sin_x),
            ],
            -1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn rope_at_position_zero_is_the_identity() {
        let zero = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        let tables = RopeTables::new(&zero, &zero, 8, 100.0, Kind::Float);
        let t = Tensor::randn([1, 2, 3, 8], (Kind::Float, Device::Cpu));
        let diff = (tables.apply(&t) - &t).abs().max().double_value(&[]);
        assert!(diff < 1e-7, "{diff}");
    }
}

//! `--colormap` on the command line: the colormaps of [`anydepth_core::colormap`] as clap
//! values (the tables themselves live there, shared with the Rerun logging).

use std::fmt;

use anydepth_core::colormap::Colormap;
use clap::builder::PossibleValue;
use clap::ValueEnum;

/// A [`Colormap`] chosen on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColormapArg(pub Colormap);

impl ColormapArg {
    const ALL: [ColormapArg; 4] = {
        let [a, b, c, d] = Colormap::ALL;
        [Self(a), Self(b), Self(c), Self(d)]
    };
}

impl ValueEnum for ColormapArg {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self.0 {
            Colormap::SpectralR => "matplotlib Spectral_r, the official Depth Anything default",
            Colormap::Gray => {
                "the normalised value in all three channels (--grayscale in the official app)"
            }
            Colormap::Inferno => "matplotlib inferno",
            Colormap::Turbo => "matplotlib turbo",
        };
        Some(PossibleValue::new(self.0.name()).help(help))
    }
}

impl fmt::Display for ColormapArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_names() {
        let names: Vec<String> = ColormapArg::value_variants()
            .iter()
            .filter_map(|c| c.to_possible_value())
            .map(|p| p.get_name().to_owned())
            .collect();
        assert_eq!(names, ["spectral_r", "gray", "inferno", "turbo"]);
        for c in ColormapArg::value_variants() {
            assert_eq!(ColormapArg::from_str(c.0.name(), false), Ok(*c));
        }
        assert_eq!(ColormapArg::default().0, Colormap::SpectralR);
    }
}

//! Query strings: `key=value` pairs, every key known (a typo is an error, not a default).

use std::str::FromStr;

use anydepth_core::colormap::Colormap;
use anydepth_pipeline::output::Format;

use crate::routes::ApiError;

/// The pairs of a query string, decoded; `known` lists the keys allowed.
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `raw` (without the `?`).
    ///
    /// # Errors
    /// A 400 when a key is not in `known` or appears twice.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (i, (key, _)) in pairs.iter().enumerate() {
            if !known.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {key:?}; known: {}",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {key:?} given twice"
                )));
            }
        }
        Ok(Self { pairs })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as a `T`, if given.
    ///
    /// # Errors
    /// A 400 when it does not parse.
    pub fn number<T: FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("{key}={v:?} is not a number")))
            })
            .transpose()
    }

    /// The value of `key` as comma-separated numbers, if given.
    ///
    /// # Errors
    /// A 400 when one does not parse.
    pub fn numbers(&self, key: &str) -> Result<Option<Vec<f64>>, ApiError> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(|n| n.trim().parse::<f64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        ApiError::bad_request(format!("{key}={v:?} is not a list of numbers"))
                    })
            })
            .transpose()
    }
}

/// The formats `POST /v1/depth` answers in (every per-image format of `anydepth depth`).
pub(crate) const DEPTH_FORMATS: [Format; 6] = [
    Format::Npy,
    Format::Png16,
    Format::Pfm,
    Format::Exr,
    Format::Color,
    Format::SideBySide,
];

/// What `POST /v1/depth` is asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DepthQuery {
    pub format: Format,
    pub colormap: Option<Colormap>,
}

impl DepthQuery {
    /// `format=npy|png16|pfm|exr|color|side-by-side` (npy when absent) and
    /// `colormap=NAME`.
    ///
    /// # Errors
    /// A 400 for an unknown key, format or colormap.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let query = Query::parse(raw, &["format", "colormap"])?;
        let format = match query.get("format") {
            None => Format::Npy,
            Some(name) => DEPTH_FORMATS
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    let names: Vec<_> = DEPTH_FORMATS.iter().map(|f| f.name()).collect();
                    ApiError::bad_request(format!(
                        "unknown format {name:?}; known: {}",
                        names.join(", ")
                    ))
                })?,
        };
        let colormap = query
            .get("colormap")
            .map(|name| {
                Colormap::ALL
                    .into_iter()
                    .find(|c| c.name() == name)
                    .ok_or_else(|| {
                        let names: Vec<_> = Colormap::ALL.iter().map(|c| c.name()).collect();
                        ApiError::bad_request(format!(
                            "unknown colormap {name:?}; known: {}",
                            names.join(", ")
                        ))
                    })
            })
            .transpose()?;
        Ok(Self { format, colormap })
    }
}

/// The content type of a depth format's bytes.
pub(crate) fn depth_content_type(format: Format) -> &'static str {
    match format {
        Format::Png16 | Format::Color | Format::SideBySide => "image/png",
        Format::Exr => "image/x-exr",
        Format::Npy | Format::Pfm | Format::Mp4 | Format::SideBySideMp4 => {
            "application/octet-stream"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_queries() {
        let q = DepthQuery::parse(None).expect("empty");
        assert_eq!(q.format, Format::Npy);
        let q = DepthQuery::parse(Some("format=color&colormap=turbo")).expect("color");
        assert_eq!(q.format, Format::Color);
        assert_eq!(q.colormap, Some(Colormap::Turbo));
        assert_eq!(
            DepthQuery::parse(Some("format=side-by-side"))
                .expect("side")
                .format,
            Format::SideBySide
        );
        for bad in [
            "format=mp4",
            "format=jpeg",
            "formats=npy",
            "format=npy&format=exr",
            "colormap=jet",
        ] {
            let err = DepthQuery::parse(Some(bad)).expect_err(bad);
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn numbers() {
        let q = Query::parse(
            Some("intrinsics=500,500.5,%20320,240&fov=60"),
            &["intrinsics", "fov"],
        )
        .expect("parses");
        assert_eq!(
            q.numbers("intrinsics").expect("numbers"),
            Some(vec![500.0, 500.5, 320.0, 240.0])
        );
        assert_eq!(q.number::<f64>("fov").expect("number"), Some(60.0));
        let q = Query::parse(Some("fov=wide"), &["fov"]).expect("parses");
        assert!(q.number::<f64>("fov").is_err());
    }
}

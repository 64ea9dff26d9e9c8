//! Reading a recording (`.rrd`) back: which entities it holds, with which archetypes and
//! components, how many instances, on which timelines. For tests and checks of what was
//! logged; the viewer is the way to look at one.
//!
//! ```no_run
//! let rrd = anydepth_viz::rrd::Rrd::read("scene.rrd".as_ref())?;
//! for entity in rrd.entity_paths() {
//!     println!("{entity}: {:?}", rrd.archetypes(&entity));
//! }
//! println!("{} points", rrd.instance_count("world/cloud", "Points3D:positions"));
//! # Ok::<(), anydepth_viz::Error>(())
//! ```

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::Path;

use rerun::external::arrow::array::{
    Array, ArrowPrimitiveType, FixedSizeListArray, ListArray, PrimitiveArray, StructArray,
};
use rerun::external::arrow::datatypes::{Float32Type, UInt32Type};
use rerun::log::{Chunk, LogMsg};

use crate::error::{Error, Result};

/// The data chunks of one recording, decoded.
#[derive(Debug)]
pub struct Rrd {
    chunks: Vec<Chunk>,
}

impl Rrd {
    /// Reads and decodes every data chunk of the `.rrd` file at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be opened or is not a valid recording.
    pub fn read(path: &Path) -> Result<Self> {
        let fail = |message: String| Error::Read {
            path: path.to_owned(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let messages = re_log_encoding::DecoderApp::decode_eager(BufReader::new(file))
            .map_err(|e| fail(e.to_string()))?;
        let mut chunks = Vec::new();
        for message in messages {
            if let LogMsg::ArrowMsg(_, arrow) = message.map_err(|e| fail(e.to_string()))? {
                chunks.push(Chunk::from_arrow_msg(&arrow).map_err(|e| fail(e.to_string()))?);
            }
        }
        Ok(Self { chunks })
    }

    /// The decoded chunks, for anything the methods below do not answer.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    fn of<'a>(&'a self, entity: &'a str) -> impl Iterator<Item = &'a Chunk> + 'a {
        self.chunks
            .iter()
            .filter(move |c| c.entity_path().to_string() == format!("/{entity}"))
    }

    /// Every entity path with data, without the leading `/` (`world/cloud`).
    pub fn entity_paths(&self) -> BTreeSet<String> {
        self.chunks
            .iter()
            .map(|c| {
                c.entity_path()
                    .to_string()
                    .trim_start_matches('/')
                    .to_owned()
            })
            .collect()
    }

    /// The archetypes logged to `entity` (`Points3D`, `Pinhole`, ...).
    pub fn archetypes(&self, entity: &str) -> BTreeSet<String> {
        self.of(entity)
            .flat_map(|c| c.components().component_descriptors())
            .filter_map(|d| d.archetype)
            .map(|a| a.short_name().to_owned())
            .collect()
    }

    /// The components logged to `entity` (`Points3D:positions`, ...).
    pub fn components(&self, entity: &str) -> BTreeSet<String> {
        self.of(entity)
            .flat_map(|c| c.components().component_descriptors())
            .map(|d| d.component.as_str().to_owned())
            .collect()
    }

    /// The timelines `entity` was logged on; empty for static data.
    pub fn timelines(&self, entity: &str) -> BTreeSet<String> {
        self.of(entity)
            .flat_map(|c| c.timelines().keys())
            .map(|t| t.as_str().to_owned())
            .collect()
    }

    /// The raw times of `entity`'s rows on `timeline`, sorted (sequence numbers, or
    /// nanoseconds for a time timeline), without repeats.
    pub fn times(&self, entity: &str, timeline: &str) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .of(entity)
            .filter_map(|c| {
                c.timelines()
                    .iter()
                    .find(|(name, _)| name.as_str() == timeline)
                    .map(|(_, column)| column.times_raw().to_vec())
            })
            .flatten()
            .collect();
        times.sort_unstable();
        times.dedup();
        times
    }

    /// How many rows (log calls) logged `component` to `entity`.
    pub fn row_count(&self, entity: &str, component: &str) -> usize {
        self.columns(entity, component)
            .map(|list| list.len() - list.null_count())
            .sum()
    }

    /// How many instances of `component` were logged to `entity`, over all rows (points
    /// of a cloud, triangles of a mesh; one per row for an image buffer).
    pub fn instance_count(&self, entity: &str, component: &str) -> usize {
        self.columns(entity, component)
            .map(|list| {
                let offsets = list.value_offsets();
                (offsets[list.len()] - offsets[0]) as usize
            })
            .sum()
    }

    /// The `f32` values of `component` on `entity`, flattened over rows and fixed-size
    /// lists in row order (a cloud's positions as x, y, z, x, ...; a pinhole's 3x3 matrix
    /// column-major).
    pub fn f32_values(&self, entity: &str, component: &str) -> Vec<f32> {
        self.columns(entity, component)
            .flat_map(|list| flat_values::<Float32Type>(list))
            .collect()
    }

    /// The `u32` values of `component` on `entity`, flattened in row order (colours as
    /// `0xRRGGBBAA`, triangle indices; an image format's `u32` fields, width and height).
    pub fn u32_values(&self, entity: &str, component: &str) -> Vec<u32> {
        self.columns(entity, component)
            .flat_map(|list| flat_values::<UInt32Type>(list))
            .collect()
    }

    fn columns<'a>(
        &'a self,
        entity: &'a str,
        component: &'a str,
    ) -> impl Iterator<Item = &'a ListArray> + 'a {
        self.of(entity).flat_map(move |chunk| {
            chunk
                .components()
                .0
                .values()
                .filter(move |column| column.descriptor.component.as_str() == component)
                .map(|column| &column.list_array)
        })
    }
}

/// The primitive values of `array` in row order: through lists and fixed-size lists (only
/// the rows of a sliced list), and a struct's fields row by row; other types give nothing.
fn flat_values<T: ArrowPrimitiveType>(array: &dyn Array) -> Vec<T::Native> {
    let any = array.as_any();
    if let Some(values) = any.downcast_ref::<PrimitiveArray<T>>() {
        return values.values().to_vec();
    }
    if let Some(list) = any.downcast_ref::<FixedSizeListArray>() {
        if list.is_empty() {
            return Vec::new();
        }
        let size = list.value_length() as usize;
        let start = list.value_offset(0) as usize;
        return flat_values::<T>(list.values().slice(start, list.len() * size).as_ref());
    }
    if let Some(list) = any.downcast_ref::<ListArray>() {
        let offsets = list.value_offsets();
        let (start, end) = (offsets[0] as usize, offsets[list.len()] as usize);
        return flat_values::<T>(list.values().slice(start, end - start).as_ref());
    }
    if let Some(fields) = any.downcast_ref::<StructArray>() {
        return (0..fields.len())
            .flat_map(|row| {
                fields
                    .columns()
                    .iter()
                    .flat_map(move |column| flat_values::<T>(column.slice(row, 1).as_ref()))
            })
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rerun::external::arrow::array::{ArrayRef, UInt32Array};
    use rerun::external::arrow::datatypes::{DataType, Field};

    use super::*;

    /// Rows come out in row order however the batcher grouped them into columns.
    #[test]
    fn struct_fields_and_sliced_lists_come_out_row_by_row() {
        let width: ArrayRef = Arc::new(UInt32Array::from(vec![45, 46]));
        let height: ArrayRef = Arc::new(UInt32Array::from(vec![31, 32]));
        let formats = StructArray::from(vec![
            (
                Arc::new(Field::new("width", DataType::UInt32, false)),
                width,
            ),
            (
                Arc::new(Field::new("height", DataType::UInt32, false)),
                height,
            ),
        ]);
        assert_eq!(flat_values::<UInt32Type>(&formats), [45, 31, 46, 32]);

        let values: ArrayRef = Arc::new(UInt32Array::from((0..9).collect::<Vec<u32>>()));
        let field = Arc::new(Field::new("item", DataType::UInt32, false));
        let triples = FixedSizeListArray::new(field, 3, values, None);
        assert_eq!(
            flat_values::<UInt32Type>(&triples.slice(1, 2)),
            [3, 4, 5, 6, 7, 8]
        );
    }
}

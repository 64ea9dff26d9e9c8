//! Reading PyTorch checkpoints written by `torch.save` (zip archive + pickle) without
//! Python: the `state_dict` files Depth Anything releases.
//!
//! Only what such files use is understood: dicts (`collections.OrderedDict`), tuples,
//! lists, numbers, strings, and tensors rebuilt by `torch._utils._rebuild_tensor_v2` /
//! `_rebuild_parameter` from storages kept beside the pickle. Anything else (arbitrary
//! classes) is refused, so loading a checkpoint never runs code.
//!
//! [`StateDict::open`] reads the pickle alone: every tensor's name, kind, shape and place in
//! its storage. The storages are read afterwards, one at a time, by
//! [`StateDict::for_each_tensor`], so a caller can copy each tensor where it belongs and let
//! it go before the next is read (a 5 GB checkpoint then never sits in memory beside the
//! network it fills). [`read_state_dict`] reads them all.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use tch::{Kind, Tensor};

use crate::file_read::{ascending_once, read_into};

/// A pickled value, as far as state dicts need.
#[derive(Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage { key: String, kind: Kind },
    Tensor(TensorEntry),
    Mark,
}

impl Value {
    fn shallow(&self) -> Value {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Tuple(v) => Value::Tuple(v.iter().map(Value::shallow).collect()),
            Value::List(v) => Value::List(v.iter().map(Value::shallow).collect()),
            Value::Dict(v) => {
                Value::Dict(v.iter().map(|(k, x)| (k.shallow(), x.shallow())).collect())
            }
            Value::Global(m, n) => Value::Global(m.clone(), n.clone()),
            Value::Storage { key, kind } => Value::Storage {
                key: key.clone(),
                kind: *kind,
            },
            Value::Tensor(t) => Value::Tensor(t.clone()),
            Value::Mark => Value::Mark,
        }
    }

    fn int_list(&self) -> Result<Vec<i64>, String> {
        match self {
            Value::Tuple(v) | Value::List(v) => v
                .iter()
                .map(|x| match x {
                    Value::Int(i) => Ok(*i),
                    other => Err(format!("expected an integer, got {other:?}")),
                })
                .collect(),
            other => Err(format!("expected a tuple of integers, got {other:?}")),
        }
    }
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// Where one tensor of a state dict lies: a strided view of one of the archive's storages.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    storage: String,
    kind: Kind,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl TensorEntry {
    /// The tensor's shape.
    pub fn size(&self) -> &[i64] {
        &self.size
    }

    /// The number of elements of its storage it reaches (0 for an empty tensor), or an
    /// error for negative offsets, sizes or strides.
    fn storage_elements_needed(&self) -> Result<i64, String> {
        if self.offset < 0 || self.size.iter().chain(&self.stride).any(|&v| v < 0) {
            return Err("negative offset, size or stride".into());
        }
        if self.size.contains(&0) {
            return Ok(0);
        }
        let last = self
            .size
            .iter()
            .zip(&self.stride)
            .try_fold(self.offset, |last, (&n, &s)| {
                (n - 1)
                    .checked_mul(s)
                    .and_then(|step| last.checked_add(step))
            })
            .and_then(|last| last.checked_add(1))
            .ok_or("tensor extent overflows")?;
        Ok(last)
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or("pickle ends early")?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("unterminated line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle mark missing")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn string(&mut self, n: usize) -> Result<Value, String> {
        Ok(Value::Str(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }

    // One arm per pickle opcode: a long match reads best as one table.
    #[allow(clippy::too_many_lines)]
    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err("integer too large".into());
                    }
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut buf = [0u8; 8];
                    buf.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(buf)));
                }
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'N' => self.stack.push(Value::None),
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memoize(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memoize(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memoize(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.recall(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.recall(i)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // Object state (an OrderedDict's `_metadata`): not needed.
                    self.pop()?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    match self.stack.last_mut() {
                        Some(Value::Dict(d)) => d.push((key, value)),
                        _ => return Err("SETITEM on a non-dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let Some(Value::Dict(d)) = self.stack.last_mut() else {
                        return Err("SETITEMS on a non-dict".into());
                    };
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return Err("APPEND on a non-list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err("APPENDS on a non-list".into()),
                    }
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
            }
        }
    }

    fn memoize(&mut self, i: u32) -> Result<(), String> {
        let top = self.stack.last().ok_or("memoize on an empty stack")?;
        self.memo.insert(i, top.shallow());
        Ok(())
    }

    fn recall(&mut self, i: u32) -> Result<(), String> {
        let v = self.memo.get(&i).ok_or("unknown memo entry")?.shallow();
        self.stack.push(v);
        Ok(())
    }

    fn persistent(&mut self, pid: Value) -> Result<Value, String> {
        let Value::Tuple(items) = pid else {
            return Err("persistent id is not a tuple".into());
        };
        match items.as_slice() {
            [Value::Str(tag), Value::Global(_, ty), Value::Str(key), ..] if tag == "storage" => {
                let kind = storage_kind(ty).ok_or_else(|| format!("unsupported storage {ty}"))?;
                Ok(Value::Storage {
                    key: key.clone(),
                    kind,
                })
            }
            _ => Err("unsupported persistent id".into()),
        }
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value, String> {
        let Value::Global(module, name) = func else {
            return Err("REDUCE of a non-global".into());
        };
        let Value::Tuple(mut args) = args else {
            return Err("REDUCE arguments are not a tuple".into());
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2") => {
                if args.len() < 4 {
                    return Err("_rebuild_tensor_v2 needs 4 arguments".into());
                }
                let Value::Storage { key, kind } = &args[0] else {
                    return Err("tensor without storage".into());
                };
                let Value::Int(offset) = args[1] else {
                    return Err("tensor offset is not an integer".into());
                };
                let size = args[2].int_list()?;
                let stride = args[3].int_list()?;
                if size.len() != stride.len() {
                    return Err("tensor size and stride differ in length".into());
                }
                Ok(Value::Tensor(TensorEntry {
                    storage: key.clone(),
                    kind: *kind,
                    offset,
                    size,
                    stride,
                }))
            }
            ("torch._utils", "_rebuild_parameter") if !args.is_empty() => Ok(args.swap_remove(0)),
            (m, n) => Err(format!(
                "refusing to rebuild {m}.{n} (not a plain state_dict)"
            )),
        }
    }
}

/// A `torch.save`d state dict's index: each tensor's name and where it lies, read from the
/// pickle without reading the storages. It keeps the file open, so the tensors are read
/// from the file that was indexed even if another is saved under its name meanwhile.
#[derive(Debug)]
pub struct StateDict {
    /// The file, read by one caller at a time.
    file: Mutex<File>,
    /// The archive's folder (`archive/`, or the name the file was saved under).
    prefix: String,
    entries: Vec<(String, TensorEntry)>,
}

impl StateDict {
    /// Reads the pickle of a `torch.save`d state dict (nested dicts are flattened with
    /// dots; a dict under `state_dict` or `model` is taken as the state dict) and checks that
    /// every tensor lies within its storage.
    ///
    /// # Errors
    /// When the file is no zip archive as `torch.save` writes, its pickle is not a plain
    /// state dict, it holds no tensors, or a tensor reaches beyond its storage (as far as
    /// the archive's directory tells; the data itself is checked as it is read).
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mut zip = open_archive(&file)?;
        let pkl_name = zip
            .file_names()
            .map(str::to_string)
            .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
            .ok_or("no data.pkl in the archive")?;
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        let mut pickle = Vec::new();
        zip.by_name(&pkl_name)
            .map_err(|e| e.to_string())?
            .read_to_end(&mut pickle)
            .map_err(|e| e.to_string())?;
        let root = Unpickler {
            data: &pickle,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
        .run()?;
        let root = match root {
            Value::Dict(items) => {
                let nested = items.iter().position(|(k, v)| {
                    matches!(k, Value::Str(s) if s == "state_dict" || s == "model")
                        && matches!(v, Value::Dict(_))
                });
                match nested {
                    Some(i) => items
                        .into_iter()
                        .nth(i)
                        .map(|(_, v)| v)
                        .unwrap_or(Value::None),
                    None => Value::Dict(items),
                }
            }
            other => return Err(format!("the pickle holds {other:?}, not a dict of tensors")),
        };
        let mut entries = Vec::new();
        flatten("", root, &mut entries);
        if entries.is_empty() {
            return Err("no tensors in the checkpoint".into());
        }
        for (name, entry) in &entries {
            let key = &entry.storage;
            let bytes = zip
                .by_name(&format!("{prefix}data/{key}"))
                .map_err(|e| format!("storage {key} of {name}: {e}"))?
                .size();
            let available = bytes / entry.kind.elt_size_in_bytes() as u64;
            let needed = entry
                .storage_elements_needed()
                .map_err(|e| format!("{name}: {e}"))?;
            if needed as u64 > available {
                return Err(format!(
                    "{name} needs {needed} elements of storage {key}, which holds {available}"
                ));
            }
        }
        drop(zip);
        Ok(Self {
            file: Mutex::new(file),
            prefix,
            entries,
        })
    }

    /// The tensors' names (as saved) and places, in the pickle's order.
    pub fn entries(&self) -> &[(String, TensorEntry)] {
        &self.entries
    }

    /// Reads the storages of the entries `wanted` (indices into [`StateDict::entries`]) one
    /// at a time, in the order those entries first use them, and hands `f` each wanted
    /// tensor (contiguous, on the CPU) with its index. Only one storage, and the tensors
    /// made from it, are held at once, beside what `f` keeps.
    ///
    /// # Errors
    /// When the file cannot be read, a storage does not hold its tensors, or `f` fails.
    pub fn for_each_tensor(
        &self,
        wanted: impl IntoIterator<Item = usize>,
        mut f: impl FnMut(usize, Tensor) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut by_storage: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut slot_of: HashMap<&str, usize> = HashMap::new();
        for i in ascending_once(wanted) {
            let (_, entry) = self
                .entries
                .get(i)
                .ok_or_else(|| format!("no tensor {i} in the state dict"))?;
            let slot = *slot_of.entry(&entry.storage).or_insert_with(|| {
                by_storage.push((&entry.storage, Vec::new()));
                by_storage.len() - 1
            });
            by_storage[slot].1.push(i);
        }
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let mut zip = open_archive(&file)?;
        let mut bytes = Vec::new();
        for (key, entry_indices) in by_storage {
            let stored = zip
                .by_name(&format!("{}data/{key}", self.prefix))
                .map_err(|e| format!("storage {key}: {e}"))?;
            let size = stored.size();
            read_into(&mut bytes, stored, size).map_err(|e| format!("storage {key}: {e}"))?;
            let kind = self.entries[entry_indices[0]].1.kind;
            let elt = kind.elt_size_in_bytes();
            if bytes.len() % elt != 0 {
                return Err(format!(
                    "storage {key}: {} bytes is not whole elements",
                    bytes.len()
                ));
            }
            let storage = Tensor::f_from_data_size(&bytes, &[(bytes.len() / elt) as i64], kind)
                .map_err(|e| e.to_string())?;
            for i in entry_indices {
                let entry = &self.entries[i].1;
                if entry.kind != kind {
                    return Err(format!("storage {key} is read as two kinds"));
                }
                let tensor = storage
                    .f_as_strided(&entry.size, &entry.stride, entry.offset)
                    .and_then(|t| t.f_contiguous())
                    .map_err(|e| format!("{}: outside its storage: {e}", self.entries[i].0))?;
                f(i, tensor)?;
            }
        }
        Ok(())
    }

    /// Reads every tensor, in the pickle's order.
    ///
    /// # Errors
    /// As [`StateDict::for_each_tensor`].
    pub fn into_tensors(self) -> Result<Vec<(String, Tensor)>, String> {
        let mut tensors: Vec<Option<Tensor>> = std::iter::repeat_with(|| None)
            .take(self.entries.len())
            .collect();
        self.for_each_tensor(0..self.entries.len(), |i, tensor| {
            tensors[i] = Some(tensor);
            Ok(())
        })?;
        Ok(self
            .entries
            .into_iter()
            .zip(tensors)
            .filter_map(|((name, _), tensor)| Some((name, tensor?)))
            .collect())
    }
}

/// The zip archive of a `torch.save`d file (read through a shared handle, which seeks).
fn open_archive(file: &File) -> Result<zip::ZipArchive<&File>, String> {
    zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive as torch.save writes ({e})"))
}

/// Reads the named tensors of a `torch.save`d state dict, in the pickle's order (see
/// [`StateDict::open`]).
///
/// # Errors
/// As [`StateDict::open`] and [`StateDict::for_each_tensor`].
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    StateDict::open(path)?.into_tensors()
}

fn flatten(prefix: &str, value: Value, out: &mut Vec<(String, TensorEntry)>) {
    match value {
        Value::Tensor(entry) => out.push((prefix.to_string(), entry)),
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, v, out);
            }
        }
        _ => {}
    }
}

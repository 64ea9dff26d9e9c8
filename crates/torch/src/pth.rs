//! Reading PyTorch checkpoints written by `torch.save` (zip archive + pickle) without
//! Python: the `state_dict` files Depth Anything releases.
//!
//! Only what such files use is understood: dicts (`collections.OrderedDict`), tuples,
//! lists, numbers, strings, and tensors rebuilt by `torch._utils._rebuild_tensor_v2` /
//! `_rebuild_parameter` from storages kept beside the pickle. Anything else (arbitrary
//! classes) is refused, so loading a checkpoint never runs code.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor};

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
    Tensor(Tensor),
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
            Value::Tensor(t) => Value::Tensor(t.shallow_clone()),
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

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    load_storage: &'a mut dyn FnMut(&str, Kind) -> Result<Tensor, String>,
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
                let storage = (self.load_storage)(key, *kind)?;
                let tensor = storage
                    .f_as_strided(&size, &stride, offset)
                    .and_then(|t| t.f_contiguous())
                    .map_err(|e| format!("tensor outside its storage: {e}"))?;
                Ok(Value::Tensor(tensor))
            }
            ("torch._utils", "_rebuild_parameter") if !args.is_empty() => Ok(args.swap_remove(0)),
            (m, n) => Err(format!(
                "refusing to rebuild {m}.{n} (not a plain state_dict)"
            )),
        }
    }
}

/// Reads the named tensors of a `torch.save`d state dict (nested dicts are flattened with
/// dots; a dict under `state_dict` or `model` is taken as the state dict).
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| format!("not a zip archive as torch.save writes ({e})"))?;
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
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    // One buffer for every storage, each copied from it into its tensor: a fresh buffer
    // per storage made the kernel supply (and zero) new pages for the whole checkpoint
    // once more, which showed in reading a 5 GB V2-G file.
    let mut bytes = Vec::new();
    let mut load_storage = |key: &str, kind: Kind| -> Result<Tensor, String> {
        if let Some(t) = storages.get(key) {
            return Ok(t.shallow_clone());
        }
        let mut entry = zip
            .by_name(&format!("{prefix}data/{key}"))
            .map_err(|e| format!("storage {key}: {e}"))?;
        bytes.clear();
        bytes.reserve_exact(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("storage {key}: {e}"))?;
        let elt = kind.elt_size_in_bytes();
        if bytes.len() % elt != 0 {
            return Err(format!(
                "storage {key}: {} bytes is not whole elements",
                bytes.len()
            ));
        }
        let t = Tensor::f_from_data_size(&bytes, &[(bytes.len() / elt) as i64], kind)
            .map_err(|e| e.to_string())?;
        storages.insert(key.to_string(), t.shallow_clone());
        Ok(t)
    };
    let root = Unpickler {
        data: &pickle,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        load_storage: &mut load_storage,
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
    let mut out = Vec::new();
    flatten("", root, &mut out);
    if out.is_empty() {
        return Err("no tensors in the checkpoint".into());
    }
    Ok(out)
}

fn flatten(prefix: &str, value: Value, out: &mut Vec<(String, Tensor)>) {
    match value {
        Value::Tensor(t) => out.push((prefix.to_string(), t)),
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

//! Minimal reader for the safetensors container used by every model artefact under `models/`.
//!
//! Format: 8-byte little-endian header length, a JSON header mapping tensor names to
//! {dtype, shape, data_offsets} (plus optional `__metadata__` strings), then raw data.
//! Reading it ourselves keeps the physics tables independent of candle.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;

/// A parsed safetensors file borrowing nothing: tensors are copied out on request.
pub struct SafeTensors<'a> {
    header: serde_json::Map<String, serde_json::Value>,
    data: &'a [u8],
    /// String metadata stored under `__metadata__`.
    pub metadata: HashMap<String, String>,
}

/// One tensor's dtype and shape.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// e.g. "F32", "U8", "I32".
    pub dtype: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    start: usize,
    end: usize,
}

impl<'a> SafeTensors<'a> {
    /// Parse the header of an in-memory safetensors file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 8 {
            bail!("not a safetensors file: {} bytes", bytes.len());
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        if 8 + n > bytes.len() {
            bail!(
                "truncated safetensors header ({} > {} bytes)",
                8 + n,
                bytes.len()
            );
        }
        let header: serde_json::Value =
            serde_json::from_slice(&bytes[8..8 + n]).context("safetensors header is not JSON")?;
        let mut header = match header {
            serde_json::Value::Object(m) => m,
            _ => bail!("safetensors header is not an object"),
        };
        let mut metadata = HashMap::new();
        if let Some(serde_json::Value::Object(m)) = header.remove("__metadata__") {
            for (k, v) in m {
                if let serde_json::Value::String(s) = v {
                    metadata.insert(k, s);
                }
            }
        }
        Ok(SafeTensors {
            header,
            data: &bytes[8 + n..],
            metadata,
        })
    }

    /// Names of all tensors.
    pub fn names(&self) -> Vec<&str> {
        self.header.keys().map(|s| s.as_str()).collect()
    }

    /// dtype and shape of a tensor.
    pub fn info(&self, name: &str) -> Result<TensorInfo> {
        let v = self
            .header
            .get(name)
            .with_context(|| format!("tensor '{name}' missing from model file"))?;
        let dtype = v["dtype"].as_str().context("dtype")?.to_string();
        let shape = v["shape"]
            .as_array()
            .context("shape")?
            .iter()
            .map(|x| x.as_u64().map(|u| u as usize).context("shape entry"))
            .collect::<Result<Vec<_>>>()?;
        let offs = v["data_offsets"].as_array().context("data_offsets")?;
        let start = offs[0].as_u64().context("offset")? as usize;
        let end = offs[1].as_u64().context("offset")? as usize;
        if end > self.data.len() || start > end {
            bail!("tensor '{name}' data out of bounds");
        }
        Ok(TensorInfo {
            dtype,
            shape,
            start,
            end,
        })
    }

    fn raw(&self, name: &str, dtype: &str, elem: usize) -> Result<(TensorInfo, &'a [u8])> {
        let info = self.info(name)?;
        if info.dtype != dtype {
            bail!("tensor '{name}' has dtype {}, expected {dtype}", info.dtype);
        }
        let count: usize = info.shape.iter().product();
        if count * elem != info.end - info.start {
            bail!("tensor '{name}' size does not match its shape");
        }
        let raw = &self.data[info.start..info.end];
        Ok((info, raw))
    }

    /// Copy out an F32 tensor, checking its shape when `shape` is given.
    pub fn f32(&self, name: &str, shape: Option<&[usize]>) -> Result<(Vec<usize>, Vec<f32>)> {
        let (info, raw) = self.raw(name, "F32", 4)?;
        check_shape(name, &info.shape, shape)?;
        let v = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok((info.shape, v))
    }

    /// Copy out an I32 tensor.
    pub fn i32(&self, name: &str, shape: Option<&[usize]>) -> Result<(Vec<usize>, Vec<i32>)> {
        let (info, raw) = self.raw(name, "I32", 4)?;
        check_shape(name, &info.shape, shape)?;
        let v = raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok((info.shape, v))
    }

    /// Copy out a U8 tensor.
    pub fn u8(&self, name: &str, shape: Option<&[usize]>) -> Result<(Vec<usize>, Vec<u8>)> {
        let (info, raw) = self.raw(name, "U8", 1)?;
        check_shape(name, &info.shape, shape)?;
        Ok((info.shape, raw.to_vec()))
    }
}

fn check_shape(name: &str, got: &[usize], want: Option<&[usize]>) -> Result<()> {
    if let Some(w) = want {
        if got != w {
            bail!("tensor '{name}' has shape {got:?}, expected {w:?}");
        }
    }
    Ok(())
}

/// Write F32 tensors (and string metadata) as a safetensors file.
pub fn write_f32(
    path: &std::path::Path,
    tensors: &[(&str, Vec<usize>, &[f32])],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    let mut sorted: Vec<_> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (name, shape, data) in &sorted {
        let n: usize = shape.iter().product();
        if n != data.len() {
            bail!(
                "tensor '{name}': shape {shape:?} does not match {} values",
                data.len()
            );
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}),
        );
        offset += 4 * n;
    }
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in &sorted {
        for x in data.iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

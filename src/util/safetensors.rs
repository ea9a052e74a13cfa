//! Reading the safetensors container used by every model artefact under `models/`,
//! through the `safetensors` crate (the one candle uses): typed copies of named tensors
//! with their shapes checked, and the `__metadata__` strings. Keeps the physics tables
//! independent of candle's tensors.

use anyhow::{bail, Context, Result};
use safetensors::Dtype;
use std::collections::HashMap;

/// A parsed safetensors file; tensors are copied out on request.
pub(crate) struct SafeTensors<'a> {
    inner: safetensors::SafeTensors<'a>,
    /// String metadata stored under `__metadata__`.
    pub(crate) metadata: HashMap<String, String>,
}

impl<'a> SafeTensors<'a> {
    /// Parse the header of an in-memory safetensors file.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .context("not a readable safetensors file")?;
        let inner = safetensors::SafeTensors::deserialize(bytes)
            .context("not a readable safetensors file")?;
        Ok(SafeTensors {
            inner,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The raw little-endian bytes of a tensor of type `dtype`, with its shape checked
    /// against `want` when given.
    fn raw(
        &self,
        name: &str,
        dtype: Dtype,
        want: Option<&[usize]>,
    ) -> Result<(Vec<usize>, &'a [u8])> {
        let view = self
            .inner
            .tensor(name)
            .with_context(|| format!("tensor '{name}' missing from model file"))?;
        if view.dtype() != dtype {
            bail!(
                "tensor '{name}' has dtype {:?}, expected {dtype:?}",
                view.dtype()
            );
        }
        let shape = view.shape().to_vec();
        if let Some(w) = want {
            if shape != w {
                bail!("tensor '{name}' has shape {shape:?}, expected {w:?}");
            }
        }
        Ok((shape, view.data()))
    }

    /// Copy out an F32 tensor, checking its shape when `shape` is given.
    pub(crate) fn f32(
        &self,
        name: &str,
        shape: Option<&[usize]>,
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let (shape, raw) = self.raw(name, Dtype::F32, shape)?;
        let v = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok((shape, v))
    }

    /// Copy out an I32 tensor, checking its shape when `shape` is given.
    pub(crate) fn i32(
        &self,
        name: &str,
        shape: Option<&[usize]>,
    ) -> Result<(Vec<usize>, Vec<i32>)> {
        let (shape, raw) = self.raw(name, Dtype::I32, shape)?;
        let v = raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok((shape, v))
    }

    /// Copy out a U8 tensor, checking its shape when `shape` is given.
    pub(crate) fn u8(&self, name: &str, shape: Option<&[usize]>) -> Result<(Vec<usize>, Vec<u8>)> {
        let (shape, raw) = self.raw(name, Dtype::U8, shape)?;
        Ok((shape, raw.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_crate_writes_and_names_what_is_wrong() {
        let data: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let ints: Vec<u8> = [7i32, -9].iter().flat_map(|x| x.to_le_bytes()).collect();
        let a = safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 2], &data).unwrap();
        let b = safetensors::tensor::TensorView::new(Dtype::I32, vec![2], &ints).unwrap();
        let c = safetensors::tensor::TensorView::new(Dtype::U8, vec![3], &[1, 0, 1]).unwrap();
        let meta = HashMap::from([("format".to_string(), "x".to_string())]);
        let bytes = safetensors::serialize([("a", a), ("b", b), ("c8", c)], Some(meta)).unwrap();
        let st = SafeTensors::parse(&bytes).unwrap();
        assert_eq!(st.metadata["format"], "x");
        assert_eq!(
            st.f32("a", Some(&[2, 2])).unwrap().1,
            [1.5, -2.0, 3.25, 0.0]
        );
        assert_eq!(st.i32("b", None).unwrap(), (vec![2], vec![7, -9]));
        assert_eq!(st.u8("c8", None).unwrap().1, [1, 0, 1]);
        let e = |r: Result<(Vec<usize>, Vec<f32>)>| format!("{:#}", r.unwrap_err());
        assert!(e(st.f32("a", Some(&[4]))).contains("shape [2, 2], expected [4]"));
        assert!(e(st.f32("b", None)).contains("dtype I32"));
        assert!(e(st.f32("c", None)).contains("'c' missing"));
        assert!(SafeTensors::parse(&bytes[..5]).is_err());
    }
}

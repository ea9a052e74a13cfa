//! Small shared utilities: deterministic random numbers, safetensors reading, statistics,
//! a vectorisable dot product.

pub mod rng;
pub mod safetensors;
pub mod special;
pub mod stats;

/// Dot product with eight independent partial sums, so that it vectorises (a plain
/// iterator sum is a serial chain of f32 additions that the compiler may not reorder).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

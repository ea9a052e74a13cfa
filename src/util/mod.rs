//! Small shared utilities (the bottom layer: imports nothing of the crate): deterministic
//! random numbers, CSV, safetensors reading, statistics, small dense linear algebra, CPU
//! feature detection, a vectorisable dot product.

pub(crate) mod column;
pub(crate) mod csv;
pub(crate) mod linalg;
pub mod rng;
pub(crate) mod safetensors;
pub(crate) mod special;
pub(crate) mod stats;

/// Whether the CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_fma() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// The machine in words, for model cards: the CPU's model name (Linux), its logical CPUs
/// and architecture, e.g. "AMD EPYC, 2 logical CPUs, x86_64".
pub(crate) fn hardware_description() -> String {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{name}, {cpus} logical CPUs, {}", std::env::consts::ARCH)
}

/// Dot product of the common prefix of `a` and `b`: AVX2 + FMA where the CPU has them
/// (checked once), otherwise eight independent partial sums that the compiler vectorises
/// (a plain iterator sum is a serial chain of f32 additions it may not reorder).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if n >= 16 && has_avx2_fma() {
        // SAFETY: the CPU supports avx2 and fma (checked at run time).
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

/// [`dot`] with AVX2 + FMA; `a` and `b` have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: every load reads 8 floats at i + 8 <= n or i + 16 <= n.
    unsafe {
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
    }
    let mut lanes = [0f32; 8];
    // SAFETY: lanes holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc0, acc1)) };
    let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

/// Portable [`dot`].
#[inline]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
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

#[cfg(test)]
mod tests {
    #[test]
    fn dot_matches_f64_reference_for_all_lengths() {
        let a: Vec<f32> = (0..131)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.37)
            .collect();
        let b: Vec<f32> = (0..131)
            .map(|i| ((i * 11 % 13) as f32 - 6.0) * 0.21)
            .collect();
        for n in 0..=131 {
            let exact: f64 = (0..n).map(|i| a[i] as f64 * b[i] as f64).sum();
            let got = super::dot(&a[..n], &b[..n]) as f64;
            assert!(
                (got - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                "n {n}: {got} vs {exact}"
            );
            assert_eq!(super::dot(&a[..n], &b), got as f32, "common prefix");
        }
    }
}

//! Separable interpolation on rectilinear (possibly non-uniform) grids.
//!
//! A [`Stencil`] holds up to 4 node indices and weights along one axis (linear: 2-point,
//! cubic: 4-point Lagrange on the actual node positions, one-sided at the grid edges).
//! [`Grid3`] stores a vector of `width` values at every node of a 3-D grid and accumulates
//! the weighted sum of the stencil's corners for selected columns.

/// Interpolation weights along one axis.
#[derive(Clone, Copy, Debug)]
pub struct Stencil {
    /// First node index.
    pub start: usize,
    /// Number of nodes (1, 2 or 4).
    pub len: usize,
    /// Weights of nodes start..start+len.
    pub w: [f32; 4],
}

/// Index i with nodes\[i\] <= x <= nodes[i+1], clamped to [0, n-2]. `nodes` ascending, n >= 2.
#[inline(always)]
pub fn locate(nodes: &[f64], x: f64) -> usize {
    let n = nodes.len();
    // partition_point: first index with nodes[i] > x
    let p = nodes.partition_point(|&v| v <= x);
    p.saturating_sub(1).min(n - 2)
}

/// Index lookup for one axis: a table over uniform bins of the axis gives a starting
/// index from which [`AxisLut::locate`] steps forward, instead of a binary search with
/// unpredictable branches. Results equal [`locate`]'s exactly.
#[derive(Clone, Debug)]
pub struct AxisLut {
    x0: f64,
    inv_dx: f64,
    start: Vec<u32>,
}

impl AxisLut {
    /// Table with `bins` uniform bins over the node range (several bins per node step
    /// keep the forward stepping short).
    pub fn new(nodes: &[f64], bins: usize) -> AxisLut {
        let (x0, x1) = (nodes[0], nodes[nodes.len() - 1]);
        let dx = (x1 - x0) / bins as f64;
        let start = (0..bins)
            .map(|b| locate(nodes, x0 + dx * b as f64) as u32)
            .collect();
        AxisLut {
            x0,
            inv_dx: 1.0 / dx,
            start,
        }
    }

    /// Same as `locate(nodes, x)` for the nodes the table was built from.
    #[inline(always)]
    pub fn locate(&self, nodes: &[f64], x: f64) -> usize {
        let r = (x - self.x0) * self.inv_dx;
        if !(r >= 0.0 && r < self.start.len() as f64) {
            return locate(nodes, x); // outside the range, or NaN
        }
        // the bin's index is the answer or just below it (locate is monotone); the
        // backward step covers rounding of the bin edges
        let mut i = self.start[r as usize] as usize;
        let last = nodes.len() - 2;
        while i < last && nodes[i + 1] <= x {
            i += 1;
        }
        while i > 0 && nodes[i] > x {
            i -= 1;
        }
        i
    }
}

/// 2-point linear stencil.
#[inline(always)]
pub fn linear(nodes: &[f64], x: f64) -> Stencil {
    if nodes.len() == 1 {
        return Stencil {
            start: 0,
            len: 1,
            w: [1.0, 0.0, 0.0, 0.0],
        };
    }
    linear_at(nodes, locate(nodes, x), x)
}

/// [`linear`] for a known `i = locate(nodes, x)` (nodes.len() >= 2).
#[inline(always)]
pub fn linear_at(nodes: &[f64], i: usize, x: f64) -> Stencil {
    let t = (x - nodes[i]) / (nodes[i + 1] - nodes[i]);
    Stencil {
        start: i,
        len: 2,
        w: [(1.0 - t) as f32, t as f32, 0.0, 0.0],
    }
}

/// 4-point Lagrange (cubic) stencil centred on the interval containing x, shifted to stay
/// inside the grid at the edges; falls back to linear for grids of fewer than 4 nodes.
#[inline(always)]
pub fn cubic(nodes: &[f64], x: f64) -> Stencil {
    let n = nodes.len();
    if n < 4 {
        return linear(nodes, x);
    }
    cubic_at(nodes, locate(nodes, x), x)
}

/// [`cubic`] for a known `i = locate(nodes, x)` (nodes.len() >= 4).
#[inline(always)]
pub fn cubic_at(nodes: &[f64], i: usize, x: f64) -> Stencil {
    let n = nodes.len();
    let s = i.saturating_sub(1).min(n - 4);
    let xs = [nodes[s], nodes[s + 1], nodes[s + 2], nodes[s + 3]];
    let mut w = [0f32; 4];
    for a in 0..4 {
        let mut p = 1.0f64;
        for b in 0..4 {
            if a != b {
                p *= (x - xs[b]) / (xs[a] - xs[b]);
            }
        }
        w[a] = p as f32;
    }
    Stencil {
        start: s,
        len: 4,
        w,
    }
}

/// Values of width `width` on the nodes of a 3-D rectilinear grid, row-major \[i\]\[j\]\[k\]\[c\];
/// each node's row is padded with zeros to `stride` = pad8(width) values.
#[derive(Clone, Debug)]
pub struct Grid3 {
    /// Node coordinates per axis.
    pub nodes: [Vec<f64>; 3],
    /// Values per node.
    pub width: usize,
    /// Row stride (width rounded up to a multiple of 8).
    pub stride: usize,
    /// Row-major, padded data.
    pub data: Vec<f32>,
}

impl Grid3 {
    /// Build from unpadded row-major data \[i\]\[j\]\[k\]\[width\].
    pub fn new(nodes: [Vec<f64>; 3], width: usize, data: &[f32]) -> Grid3 {
        assert_eq!(
            data.len(),
            nodes[0].len() * nodes[1].len() * nodes[2].len() * width
        );
        Grid3 {
            nodes,
            width,
            stride: pad8(width),
            data: pad_rows(data, width),
        }
    }

    /// Offset of node (i, j, k).
    #[inline(always)]
    pub fn offset(&self, i: usize, j: usize, k: usize) -> usize {
        ((i * self.nodes[1].len() + j) * self.nodes[2].len() + k) * self.stride
    }

    /// out\[n\] += sum over stencil corners of weight * data\[corner\][cols\[n\]] for each n.
    #[inline]
    pub fn accumulate(&self, s: &[Stencil; 3], cols: &[usize], out: &mut [f32]) {
        debug_assert!(out.len() >= cols.len());
        for a in 0..s[0].len {
            let wa = s[0].w[a];
            for b in 0..s[1].len {
                let wab = wa * s[1].w[b];
                for c in 0..s[2].len {
                    let w = wab * s[2].w[c];
                    let base = self.offset(s[0].start + a, s[1].start + b, s[2].start + c);
                    let row = &self.data[base..base + self.width];
                    for (o, &col) in out.iter_mut().zip(cols) {
                        *o += w * row[col];
                    }
                }
            }
        }
    }

    /// Like [`Grid3::accumulate`] for a contiguous column range [c0, c0 + out.len()).
    #[inline(always)]
    pub fn accumulate_range(&self, s: &[Stencil; 3], c0: usize, out: &mut [f32]) {
        let n = out.len();
        for a in 0..s[0].len {
            let wa = s[0].w[a];
            for b in 0..s[1].len {
                let wab = wa * s[1].w[b];
                for c in 0..s[2].len {
                    let w = wab * s[2].w[c];
                    let base = self.offset(s[0].start + a, s[1].start + b, s[2].start + c) + c0;
                    let row = &self.data[base..base + n];
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o += w * v;
                    }
                }
            }
        }
    }

    /// A grid keeping only the given node indices along `axis` (for leave-out validation).
    pub fn take_nodes(&self, axis: usize, keep: &[usize]) -> Grid3 {
        let mut nodes = self.nodes.clone();
        nodes[axis] = keep.iter().map(|&i| self.nodes[axis][i]).collect();
        let dims = [nodes[0].len(), nodes[1].len(), nodes[2].len()];
        let mut data = Vec::with_capacity(dims[0] * dims[1] * dims[2] * self.stride);
        for i in 0..dims[0] {
            for j in 0..dims[1] {
                for k in 0..dims[2] {
                    let mut src = [i, j, k];
                    src[axis] = keep[src[axis]];
                    let o = self.offset(src[0], src[1], src[2]);
                    data.extend_from_slice(&self.data[o..o + self.stride]);
                }
            }
        }
        Grid3 {
            nodes,
            width: self.width,
            stride: self.stride,
            data,
        }
    }
}

/// Most corners a 3-D stencil can have (4 x 4 x 4).
pub const MAX_CORNERS: usize = 64;

impl Grid3 {
    /// out\[c\] = the stencil-weighted sum of column c over the stencil's corners, for every
    /// column of the padded row (out.len() == stride).
    #[inline(always)]
    pub fn interpolate_row<const FMA: bool>(&self, s: &[Stencil; 3], out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.stride);
        // compile-time corner counts (unrolled loops) for the forward model's two shapes
        match [s[0].len, s[1].len, s[2].len] {
            [4, 4, 4] => self.interpolate_n::<64, FMA>(s, [4, 4, 4], out),
            [4, 2, 2] => self.interpolate_n::<16, FMA>(s, [4, 2, 2], out),
            lens => self.interpolate_n::<MAX_CORNERS, FMA>(s, lens, out),
        }
    }

    /// [`Grid3::interpolate_row`] for a stencil of shape `lens` with at most N corners.
    #[inline(always)]
    fn interpolate_n<const N: usize, const FMA: bool>(
        &self,
        s: &[Stencil; 3],
        lens: [usize; 3],
        out: &mut [f32],
    ) {
        let n = lens[0] * lens[1] * lens[2];
        let mut offs = [0usize; N];
        let mut ws = [0f32; N];
        let d2 = self.stride;
        let d1 = self.nodes[2].len() * d2;
        let d0 = self.nodes[1].len() * d1;
        let base = self.offset(s[0].start, s[1].start, s[2].start);
        let mut k = 0;
        for a in 0..lens[0] {
            for b in 0..lens[1] {
                let wab = s[0].w[a] * s[1].w[b];
                let o = base + a * d0 + b * d1;
                for c in 0..lens[2] {
                    offs[k] = o + c * d2;
                    ws[k] = wab * s[2].w[c];
                    k += 1;
                }
            }
        }
        weighted_row_sum::<FMA>(&self.data, &offs[..n], &ws[..n], out);
    }
}

/// out\[c\] = sum_k ws\[k\] * data[offs\[k\] + c] for c < out.len(), where out.len() is a
/// multiple of 8. Columns are processed in register-resident blocks (32 wide, then one
/// 8/16/24-wide tail) so the accumulators never round-trip through memory; `FMA` selects
/// fused multiply-add (only inside code compiled with the `fma` target feature).
///
/// Panics if a row would read past `data` (checked once per call, not per row).
#[inline(always)]
pub fn weighted_row_sum<const FMA: bool>(
    data: &[f32],
    offs: &[usize],
    ws: &[f32],
    out: &mut [f32],
) {
    let width = out.len();
    assert!(width.is_multiple_of(8) && offs.len() <= ws.len());
    let last = offs.iter().fold(0usize, |m, &o| m.max(o));
    assert!(offs.is_empty() || last + width <= data.len());
    let mut c0 = 0;
    while c0 + 32 <= width {
        // SAFETY: every row offs[k] + [0, width) lies inside `data` (asserted above).
        unsafe { block::<32, FMA>(data, offs, ws, c0, &mut out[c0..c0 + 32]) };
        c0 += 32;
    }
    // SAFETY: as above.
    unsafe {
        match width - c0 {
            24 => block::<24, FMA>(data, offs, ws, c0, &mut out[c0..]),
            16 => block::<16, FMA>(data, offs, ws, c0, &mut out[c0..]),
            8 => block::<8, FMA>(data, offs, ws, c0, &mut out[c0..]),
            _ => {}
        }
    }
}

/// # Safety
/// `data[offs[k] + c0 .. offs[k] + c0 + L]` must be in bounds for every k.
#[inline(always)]
unsafe fn block<const L: usize, const FMA: bool>(
    data: &[f32],
    offs: &[usize],
    ws: &[f32],
    c0: usize,
    out: &mut [f32],
) {
    let mut acc = [0f32; L];
    let base = data.as_ptr().add(c0);
    for (&o, &w) in offs.iter().zip(ws) {
        let row = &*(base.add(o) as *const [f32; L]);
        for l in 0..L {
            acc[l] = if FMA {
                w.mul_add(row[l], acc[l])
            } else {
                acc[l] + w * row[l]
            };
        }
    }
    out[..L].copy_from_slice(&acc);
}

/// Round up to a multiple of 8 (table rows are padded so kernels need no scalar tail).
pub const fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Copy a \[rows\]\[width\] table into \[rows\]\[pad8(width)\] with zero padding.
pub fn pad_rows(data: &[f32], width: usize) -> Vec<f32> {
    let wp = pad8(width);
    if wp == width {
        return data.to_vec();
    }
    let rows = data.len() / width;
    let mut out = vec![0f32; rows * wp];
    for r in 0..rows {
        out[r * wp..r * wp + width].copy_from_slice(&data[r * width..(r + 1) * width]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_lut_agrees_with_binary_search() {
        let nodes: Vec<f64> = [
            3500.0, 3750.0, 4000.0, 5000.0, 5250.0, 13000.0, 14000.0, 50000.0,
        ]
        .iter()
        .map(|t: &f64| t.log10())
        .collect();
        let lut = AxisLut::new(&nodes, 64);
        let mut x = nodes[0] - 0.1;
        while x < nodes[nodes.len() - 1] + 0.1 {
            assert_eq!(lut.locate(&nodes, x), locate(&nodes, x), "x = {x}");
            x += 1.3e-4;
        }
        for &v in &nodes {
            assert_eq!(lut.locate(&nodes, v), locate(&nodes, v));
        }
        assert_eq!(lut.locate(&nodes, f64::NAN), locate(&nodes, f64::NAN));
    }

    #[test]
    fn cubic_reproduces_cubic_polynomials_on_nonuniform_nodes() {
        let nodes = vec![0.0, 0.3, 1.0, 1.2, 2.5, 3.0, 4.4];
        let f = |x: f64| 1.0 - 2.0 * x + 0.5 * x * x - 0.1 * x * x * x;
        for &x in &[0.0, 0.1, 0.77, 1.1, 2.0, 2.9, 4.4] {
            let s = cubic(&nodes, x);
            let v: f64 = (0..s.len)
                .map(|a| s.w[a] as f64 * f(nodes[s.start + a]))
                .sum();
            assert!((v - f(x)).abs() < 1e-5, "x={x}: {v} vs {}", f(x));
            let wsum: f32 = s.w[..s.len].iter().sum();
            assert!((wsum - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn grid_is_exact_at_nodes_and_linear_in_cells() {
        let nodes = [
            vec![0.0, 1.0, 3.0],
            vec![0.0, 1.0],
            vec![-1.0, 0.0, 0.5, 2.0],
        ];
        let dims = [3, 2, 4];
        let mut data = Vec::new();
        for i in 0..dims[0] {
            for j in 0..dims[1] {
                for k in 0..dims[2] {
                    let (x, y, z) = (nodes[0][i], nodes[1][j], nodes[2][k]);
                    data.push((x + 2.0 * y - z) as f32);
                    data.push((x * y) as f32);
                }
            }
        }
        let g = Grid3::new(nodes.clone(), 2, &data);
        let (x, y, z) = (2.2, 0.4, 0.9);
        let s = [
            linear(&g.nodes[0], x),
            linear(&g.nodes[1], y),
            cubic(&g.nodes[2], z),
        ];
        let mut out = [0f32; 2];
        g.accumulate(&s, &[0, 1], &mut out);
        assert!((out[0] as f64 - (x + 2.0 * y - z)).abs() < 1e-5);
        assert!((out[1] as f64 - x * y).abs() < 1e-5);
        // a decimated grid still reproduces the (linear in x, y) first column
        let d = g.take_nodes(2, &[0, 2, 3]);
        assert_eq!(d.nodes[2], vec![-1.0, 0.5, 2.0]);
        let s2 = [
            linear(&d.nodes[0], x),
            linear(&d.nodes[1], y),
            linear(&d.nodes[2], z),
        ];
        let mut o2 = [0f32; 1];
        d.accumulate_range(&s2, 0, &mut o2);
        assert!((o2[0] as f64 - (x + 2.0 * y - z)).abs() < 1e-5);
    }
}

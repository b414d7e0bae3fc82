//! The supernet's hot path as Candle custom ops (CPU): depthwise convolution with TF "SAME"
//! padding, and training-mode batch norm fused with its activation. Both have hand-written
//! backward passes, parallel over batch × channels with rayon, and loops compiled for AVX2
//! where the CPU has it (`simd.rs`). Plus the 1×1 convolution as one matmul over the
//! batch. Candle 0.11's grouped convolution runs one convolution per channel and its batch norm
//! is a chain of reductions and broadcasts: an order of magnitude slower than these.
//!
//! The depthwise convolution works on a zero-padded copy of each plane split into its stride
//! phases (`DwFlat`): there every kernel tap is one contiguous multiply-add over the whole
//! plane, where a row-by-row loop runs short, strided loops (planes at the proxy's widths are
//! 1×1 to 32×32). That made the step at width ×0.5, batch 128 about 20% faster.
//!
//! On any other device (CUDA) the same functions run Candle's own ops instead
//! ([`depthwise_conv2d_candle`], [`batch_norm_act_candle`]): a depthwise convolution as k² shifted
//! multiply-adds (Candle's grouped convolution is one convolution per channel), batch norm from
//! reductions and broadcasts. [`with_candle_kernels`] runs them on the CPU too.
//!
//! Every op is checked against Candle's native ops (forward and gradients) in this module's tests.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use latency_tables::Activation;
use rayon::prelude::*;

use super::simd::wide_fn;

thread_local! {
    static CANDLE_KERNELS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with Candle's own ops for this module's ops on every device, the CPU included: the
/// path a CUDA device takes, checked and timed where there is no GPU. Applies to the ops
/// called on this thread.
pub fn with_candle_kernels<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CANDLE_KERNELS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CANDLE_KERNELS.with(|c| c.replace(true)));
    f()
}

/// Whether `x` gets the custom CPU ops (a CPU tensor, outside [`with_candle_kernels`]).
fn custom(x: &Tensor) -> bool {
    x.device().is_cpu() && !CANDLE_KERNELS.with(Cell::get)
}

/// TF "SAME" padding for one spatial dimension: (output size, padding before).
/// The extra row or column of an odd total padding goes after (bottom/right).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2)
}

fn contiguous_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{what}: the custom op needs a contiguous f32 tensor"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_data<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(contiguous_slice(cpu, layout, what)?),
        _ => bail!("{what}: only the CPU backend has this custom op"),
    }
}

/// Depthwise k×k convolution, stride s, TF "SAME" padding: x `[N, C, H, W]`, w `[C, K, K]`.
#[derive(Debug, Clone, Copy)]
struct Depthwise {
    stride: usize,
}

struct DwGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    oh: usize,
    ow: usize,
    pt: usize,
    pl: usize,
}

impl DwGeom {
    fn new(x: &[usize], wt: &[usize], s: usize) -> Result<Self> {
        let (&[n, c, h, w], &[wc, k, k2]) = (x, wt) else {
            bail!("depthwise: expected x [N,C,H,W] and w [C,K,K], got {x:?} and {wt:?}")
        };
        if wc != c || k != k2 {
            bail!("depthwise: weight {wt:?} does not fit input {x:?}");
        }
        let (oh, pt) = same_padding(h, k, s);
        let (ow, pl) = same_padding(w, k, s);
        Ok(DwGeom { n, c, h, w, k, s, oh, ow, pt, pl })
    }

    /// The outputs `[lo, hi)` whose input `o·s + kk − pad` lies inside `[0, size)` (empty when
    /// kernel offset `kk` reads only padding).
    #[inline]
    fn valid(&self, kk: usize, pad: usize, size: usize, outs: usize) -> (usize, usize) {
        let lo = pad.saturating_sub(kk).div_ceil(self.s);
        let hi = if size + pad > kk { (size + pad - kk).div_ceil(self.s).min(outs) } else { 0 };
        (lo, hi.max(lo))
    }
}

/// The forward's flat layout of one plane: the input zero-padded and split into its s×s stride
/// phases (phase (a, b) holds padded rows a, a+s, … and columns b, b+s, …), each `qh × qw`. In
/// it, tap (kh, kw) of every output is the same flat offset from the output's own position
/// `oy·qw + ox`, so a tap is one contiguous multiply-add over the whole plane (`len` values)
/// instead of one short, strided one per output row; the `qw − ow` extra values per row are
/// dropped when the plane is copied out.
struct DwFlat {
    s: usize,
    qh: usize,
    qw: usize,
    /// Offset in the phase buffer and weight index of every tap that reaches an output.
    taps: Vec<(usize, usize)>,
    /// `(oh − 1)·qw + ow`: the flat span of the outputs.
    len: usize,
}

impl DwFlat {
    fn new(g: &DwGeom) -> DwFlat {
        let s = g.s;
        let (qh, qw) = (g.oh + (g.k - 1) / s, g.ow + (g.k - 1) / s);
        let mut flat = DwFlat { s, qh, qw, taps: Vec::new(), len: (g.oh - 1) * qw + g.ow };
        let reaches = |kk: usize, pad: usize, size: usize, outs: usize| {
            let (lo, hi) = g.valid(kk, pad, size, outs);
            lo < hi
        };
        for kh in 0..g.k {
            for kw in 0..g.k {
                if reaches(kh, g.pt, g.h, g.oh) && reaches(kw, g.pl, g.w, g.ow) {
                    // Tap (kh, kw) of output (0, 0) reads padded position (kh, kw).
                    if let Some(off) = flat.index(kh, kw) {
                        flat.taps.push((off, kh * g.k + kw));
                    }
                }
            }
        }
        flat
    }

    /// Values of the phase buffer.
    fn size(&self) -> usize {
        self.s * self.s * self.qh * self.qw
    }

    /// Where padded position (py, px) lives in the phase buffer; `None` past the phases (read by
    /// no output).
    #[inline(always)]
    fn index(&self, py: usize, px: usize) -> Option<usize> {
        let (s, qh, qw) = (self.s, self.qh, self.qw);
        (py < qh * s && px < qw * s)
            .then(|| ((((py % s) * s + px % s) * qh) + py / s) * qw + px / s)
    }
}

/// Writes plane `xp` into `buf` in the [`DwFlat`] layout (zeros in the padding).
#[inline(always)]
fn fill_phases(g: &DwGeom, f: &DwFlat, xp: &[f32], buf: &mut [f32]) {
    buf.fill(0.0);
    // Input (iy, ix) is padded (iy + pt, ix + pl).
    for (iy, row) in xp.chunks_exact(g.w).enumerate() {
        let py = iy + g.pt;
        if g.s == 1 {
            // One phase: the row's values stay together.
            if let Some(start) = f.index(py, g.pl) {
                let n = g.w.min(f.qw - g.pl);
                buf[start..start + n].copy_from_slice(&row[..n]);
            }
        } else {
            for (ix, &v) in row.iter().enumerate() {
                if let Some(i) = f.index(py, ix + g.pl) {
                    buf[i] = v;
                }
            }
        }
    }
}

/// The inverse of [`fill_phases`]: the input plane's values from the layout (padding dropped;
/// inputs past the phases, which no output reads, get 0).
#[inline(always)]
fn gather_phases(g: &DwGeom, f: &DwFlat, buf: &[f32], xp: &mut [f32]) {
    for (iy, row) in xp.chunks_exact_mut(g.w).enumerate() {
        for (ix, v) in row.iter_mut().enumerate() {
            *v = f.index(iy + g.pt, ix + g.pl).map_or(0.0, |i| buf[i]);
        }
    }
}

/// Output rows `dyp` (`oh × ow`) spread to the layout's row length `qw`, zeros between rows.
#[inline(always)]
fn spread_rows(g: &DwGeom, f: &DwFlat, dyp: &[f32], out: &mut [f32]) {
    let out = &mut out[..f.len];
    out.fill(0.0);
    for (oy, row) in dyp.chunks_exact(g.ow).enumerate() {
        out[oy * f.qw..oy * f.qw + g.ow].copy_from_slice(row);
    }
}

wide_fn! {
    /// One (n, c) plane of the depthwise input gradient: every tap scatters `w · dy` back into the
    /// layout in one contiguous pass, then the layout is gathered into `dxp`.
    fn dw_plane_dx(
        g: &DwGeom,
        f: &DwFlat,
        dyp: &[f32],
        wk: &[f32],
        dxp: &mut [f32],
        buf: &mut [f32],
        dyf: &mut [f32],
    ) {
        spread_rows(g, f, dyp, dyf);
        buf.fill(0.0);
        for &(off, wi) in &f.taps {
            let w = wk[wi];
            for (b, &d) in buf[off..off + f.len].iter_mut().zip(&dyf[..f.len]) {
                *b += w * d;
            }
        }
        gather_phases(g, f, buf, dxp);
    }
}

wide_fn! {
    /// One (n, c) plane's contribution to the depthwise weight gradient: per tap, the dot product
    /// of `dy` with the input at that tap's offset, added to `acc` (f64).
    fn dw_plane_dw(
        g: &DwGeom,
        f: &DwFlat,
        xp: &[f32],
        dyp: &[f32],
        acc: &mut [f64],
        buf: &mut [f32],
        dyf: &mut [f32],
    ) {
        fill_phases(g, f, xp, buf);
        spread_rows(g, f, dyp, dyf);
        let dyf = &dyf[..f.len];
        for &(off, wi) in &f.taps {
            acc[wi] += f64::from(lane_sum2(dyf, &buf[off..off + f.len], |d, v| d * v));
        }
    }
}

wide_fn! {
    /// One (n, c) plane of the depthwise forward through [`DwFlat`]: `buf` and `acc` are scratch.
    fn dw_plane_forward(
        g: &DwGeom,
        f: &DwFlat,
        xp: &[f32],
        wk: &[f32],
        o: &mut [f32],
        buf: &mut [f32],
        acc: &mut [f32],
    ) {
        fill_phases(g, f, xp, buf);
        let acc = &mut acc[..f.len];
        acc.fill(0.0);
        for &(off, wi) in &f.taps {
            let w = wk[wi];
            for (ov, &xv) in acc.iter_mut().zip(&buf[off..off + f.len]) {
                *ov += w * xv;
            }
        }
        for (oy, orow) in o.chunks_exact_mut(g.ow).enumerate() {
            orow.copy_from_slice(&acc[oy * f.qw..oy * f.qw + g.ow]);
        }
    }
}

fn dw_forward(g: &DwGeom, x: &[f32], wt: &[f32]) -> Vec<f32> {
    let (hw, ohw, kk2) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
    let flat = DwFlat::new(g);
    let mut out = vec![0f32; g.n * g.c * ohw];
    out.par_chunks_mut(ohw).enumerate().for_each_init(
        || (vec![0f32; flat.size()], vec![0f32; flat.len]),
        |(buf, acc), (plane, o)| {
            let c = plane % g.c;
            let xp = &x[plane * hw..(plane + 1) * hw];
            let wk = &wt[c * kk2..(c + 1) * kk2];
            dw_plane_forward(g, &flat, xp, wk, o, buf, acc);
        },
    );
    out
}

fn dw_backward(g: &DwGeom, x: &[f32], wt: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (hw, ohw, kk2) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
    let flat = DwFlat::new(g);
    let scratch = || (vec![0f32; flat.size()], vec![0f32; flat.len]);
    // dx: one (n, c) plane per task.
    let mut dx = vec![0f32; g.n * g.c * hw];
    dx.par_chunks_mut(hw).enumerate().for_each_init(scratch, |(buf, dyf), (plane, dxp)| {
        let c = plane % g.c;
        let dyp = &dy[plane * ohw..(plane + 1) * ohw];
        dw_plane_dx(g, &flat, dyp, &wt[c * kk2..(c + 1) * kk2], dxp, buf, dyf);
    });
    // dw: one channel per task, summed over the batch in a fixed order (deterministic).
    let mut dw = vec![0f32; g.c * kk2];
    dw.par_chunks_mut(kk2).enumerate().for_each_init(scratch, |(buf, dyf), (c, dwc)| {
        let mut acc = vec![0f64; kk2];
        for n in 0..g.n {
            let plane = n * g.c + c;
            let xp = &x[plane * hw..(plane + 1) * hw];
            let dyp = &dy[plane * ohw..(plane + 1) * ohw];
            dw_plane_dw(g, &flat, xp, dyp, &mut acc, buf, dyf);
        }
        for (d, a) in dwc.iter_mut().zip(acc) {
            *d = a as f32;
        }
    });
    (dx, dw)
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = DwGeom::new(l1.dims(), l2.dims(), self.stride)?;
        let x = contiguous_slice(s1, l1, "depthwise input")?;
        let w = contiguous_slice(s2, l2, "depthwise weight")?;
        let out = dw_forward(&g, x, w);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.c, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = DwGeom::new(x.dims(), w.dims(), self.stride)?;
        let (dx, dw) = with_data(x, "depthwise input", |xs| {
            with_data(w, "depthwise weight", |ws| {
                with_data(dy, "depthwise gradient", |dys| Ok(dw_backward(&g, xs, ws, dys)))
            })
        })?;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = Tensor::from_vec(dw, w.shape(), w.device())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Depthwise convolution of x `[N, C, H, W]` with w `[C, K, K]`, TF "SAME" padding.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    if !custom(x) {
        return depthwise_conv2d_candle(x, w, stride);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Depthwise { stride })
}

/// [`depthwise_conv2d`] from Candle's own ops, on any device: the sum over the k² kernel taps of
/// the shifted (and, at stride s, subsampled) padded input times that tap's per-channel weight.
pub fn depthwise_conv2d_candle(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (wc, k, k2) = w.dims3()?;
    if wc != c || k != k2 {
        bail!("depthwise: weight {:?} does not fit input {:?}", w.dims(), x.dims());
    }
    let s = stride;
    let ((oh, _), (ow, _)) = (same_padding(h, k, s), same_padding(wd, k, s));
    // s − 1 more zeros bottom/right, so every tap's window of s·o rows (columns) fits and
    // reshapes into o groups of s, whose first element is the tap's input.
    let xp = pad_same(x, k, s)?.pad_with_zeros(2, 0, s - 1)?.pad_with_zeros(3, 0, s - 1)?;
    let pw = xp.dim(3)?;
    let every = |t: Tensor, dim: usize, outs: usize| -> Result<Tensor> {
        if s == 1 {
            return Ok(t);
        }
        let mut shape = t.dims().to_vec();
        shape.splice(dim..=dim, [outs, s]);
        t.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
    };
    let mut out: Option<Tensor> = None;
    for kh in 0..k {
        let rows = every(xp.narrow(2, kh, s * oh)?.contiguous()?, 2, oh)?;
        debug_assert_eq!(rows.dims(), [n, c, oh, pw]);
        for kw in 0..k {
            let tap = every(rows.narrow(3, kw, s * ow)?.contiguous()?, 3, ow)?;
            let wt = w.narrow(1, kh, 1)?.narrow(2, kw, 1)?.reshape((1, c, 1, 1))?;
            let term = tap.broadcast_mul(&wt)?;
            out = Some(match out {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::msg("depthwise: empty kernel"))
}

/// Training-mode batch norm with a fused activation: batch statistics per channel, the affine
/// transform, then `act`. The forward keeps each channel's mean and 1/std for the backward.
#[derive(Debug, Clone)]
struct BatchNormTrain {
    eps: f64,
    act: Activation,
    /// Per channel (mean, 1/sqrt(var + eps)), written once by the forward.
    stats: Arc<OnceLock<Vec<(f32, f32)>>>,
}

/// Lanes of the vectorised sums: independent accumulators let the compiler use SIMD (a plain
/// f32 `sum()` is a sequential dependency chain).
const LANES: usize = 8;

/// `Σ f(a[i], b[i])` with [`LANES`] accumulators.
#[inline(always)]
fn lane_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(&x, &y)| f(x, y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ f(a[i])` with [`LANES`] accumulators.
#[inline(always)]
fn lane_sum(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lane_sum2(a, a, |x, _| f(x))
}

wide_fn! {
    /// Mean and 1/sqrt(var + eps) of channel `ch` over the batch: two passes, per-plane f32 sums
    /// (planes are at most a few thousand elements) accumulated in f64.
    fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize, ch: usize, eps: f64) -> (f32, f32) {
        let m = (n * hw) as f64;
        let plane = |b: usize| &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
        let sum: f64 = (0..n).map(|b| f64::from(lane_sum(plane(b), |v| v))).sum();
        let mean = sum / m;
        let mf = mean as f32;
        let sq: f64 = (0..n).map(|b| f64::from(lane_sum(plane(b), |v| (v - mf) * (v - mf)))).sum();
        (mf, (1.0 / (sq / m + eps).sqrt()) as f32)
    }
}

wide_fn! {
    /// One plane of the batch norm forward: `o = act(x·scale + shift)`, one loop per activation so
    /// that each vectorises.
    fn bn_plane_forward(xs: &[f32], o: &mut [f32], scale: f32, shift: f32, act: Activation) {
        match act {
            Activation::Relu => {
                for (ov, &xv) in o.iter_mut().zip(xs) {
                    *ov = (xv * scale + shift).max(0.0);
                }
            }
            Activation::HSwish => {
                for (ov, &xv) in o.iter_mut().zip(xs) {
                    *ov = act_fwd(Activation::HSwish, xv * scale + shift);
                }
            }
            Activation::None => {
                for (ov, &xv) in o.iter_mut().zip(xs) {
                    *ov = xv * scale + shift;
                }
            }
        }
    }
}

/// What the batch norm backward needs of one channel: its (mean, 1/std), γ, β, activation.
#[derive(Clone, Copy)]
struct BnChannel {
    mean: f32,
    inv: f32,
    gamma: f32,
    beta: f32,
    act: Activation,
}

impl BnChannel {
    /// `(dz, x̂)` at input `v` with upstream gradient `d`: dz = d · act'(z), z = x̂·γ + β.
    #[inline(always)]
    fn dz(self, d: f32, v: f32) -> (f32, f32) {
        let xhat = (v - self.mean) * self.inv;
        let dz = match self.act {
            Activation::None => d,
            act => d * act_grad(act, xhat * self.gamma + self.beta),
        };
        (dz, xhat)
    }
}

wide_fn! {
    /// One plane's `(Σ dz, Σ dz·x̂)`.
    fn bn_plane_sums(ch: BnChannel, d: &[f32], v: &[f32]) -> (f32, f32) {
        let sdz = lane_sum2(d, v, |d, v| ch.dz(d, v).0);
        let sdzx = lane_sum2(d, v, |d, v| {
            let (dz, xhat) = ch.dz(d, v);
            dz * xhat
        });
        (sdz, sdzx)
    }
}

wide_fn! {
    /// One plane of the batch norm input gradient: `dx = γ/σ · (dz − mean(dz) − x̂·mean(dz·x̂))`.
    fn bn_plane_dx(ch: BnChannel, a: f32, b: f32, d: &[f32], v: &[f32], o: &mut [f32]) {
        let k = ch.gamma * ch.inv;
        for ((ov, &d), &v) in o.iter_mut().zip(d).zip(v) {
            let (dz, xhat) = ch.dz(d, v);
            *ov = k * (dz - a - xhat * b);
        }
    }
}

fn dims_nchw(d: &[usize]) -> Result<(usize, usize, usize)> {
    match *d {
        [n, c, h, w] => Ok((n, c, h * w)),
        [n, c] => Ok((n, c, 1)),
        _ => bail!("batch norm: expected [N,C,H,W] or [N,C], got {d:?}"),
    }
}

/// `act(z)` for the fused activations.
#[inline(always)]
fn act_fwd(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Relu => z.max(0.0),
        Activation::HSwish => z * (z + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
        Activation::None => z,
    }
}

/// `d act / dz` at `z` (ReLU: 0 at 0, as Candle's).
#[inline(always)]
fn act_grad(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::HSwish => {
            if z < -3.0 {
                0.0
            } else if z > 3.0 {
                1.0
            } else {
                (2.0 * z + 3.0) * (1.0 / 6.0)
            }
        }
        Activation::None => 1.0,
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw) = dims_nchw(l1.dims())?;
        let x = contiguous_slice(s1, l1, "batch norm input")?;
        let gamma = contiguous_slice(s2, l2, "batch norm gamma")?;
        let beta = contiguous_slice(s3, l3, "batch norm beta")?;
        if gamma.len() != c || beta.len() != c {
            bail!("batch norm: {c} channels but gamma/beta of {}/{}", gamma.len(), beta.len());
        }
        let stats: Vec<(f32, f32)> =
            (0..c).into_par_iter().map(|ch| channel_stats(x, n, c, hw, ch, self.eps)).collect();
        let mut out = vec![0f32; x.len()];
        let act = self.act;
        out.par_chunks_mut(hw).enumerate().for_each(|(plane, o)| {
            let ch = plane % c;
            let (mean, inv) = stats[ch];
            let scale = inv * gamma[ch];
            let shift = beta[ch] - mean * scale;
            bn_plane_forward(&x[plane * hw..(plane + 1) * hw], o, scale, shift, act);
        });
        // A second forward of the same op (never done by Candle) keeps the first statistics.
        let _ = self.stats.set(stats);
        Ok((CpuStorage::F32(out), Shape::from(l1.dims())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, hw) = dims_nchw(x.dims())?;
        let (eps, act) = (self.eps, self.act);
        let (dx, dgamma, dbeta) = with_data(x, "batch norm input", |xs| {
            let stats: Vec<(f32, f32)> = match self.stats.get() {
                Some(s) => s.clone(),
                None => (0..c).map(|ch| channel_stats(xs, n, c, hw, ch, eps)).collect(),
            };
            with_data(gamma, "batch norm gamma", |gs| {
                with_data(beta, "batch norm beta", |bs| {
                    with_data(dy, "batch norm gradient", |dys| {
                        let channel = |ch: usize| BnChannel {
                            mean: stats[ch].0,
                            inv: stats[ch].1,
                            gamma: gs[ch],
                            beta: bs[ch],
                            act,
                        };
                        // Per channel Σdz and Σdz·x̂.
                        let sums: Vec<(f64, f64)> = (0..c)
                            .into_par_iter()
                            .map(|ch| {
                                let (mut sdz, mut sdzx) = (0f64, 0f64);
                                for b in 0..n {
                                    let p = (b * c + ch) * hw;
                                    let (d, v) = (&dys[p..p + hw], &xs[p..p + hw]);
                                    let (a, b) = bn_plane_sums(channel(ch), d, v);
                                    sdz += f64::from(a);
                                    sdzx += f64::from(b);
                                }
                                (sdz, sdzx)
                            })
                            .collect();
                        let m = (n * hw) as f64;
                        let mut dx = vec![0f32; xs.len()];
                        dx.par_chunks_mut(hw).enumerate().for_each(|(plane, o)| {
                            let ch = plane % c;
                            let (sdz, sdzx) = sums[ch];
                            let (a, b) = ((sdz / m) as f32, (sdzx / m) as f32);
                            let p = plane * hw;
                            bn_plane_dx(channel(ch), a, b, &dys[p..p + hw], &xs[p..p + hw], o);
                        });
                        let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
                        let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
                        Ok((dx, dgamma, dbeta))
                    })
                })
            })
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// Batch norm with the batch's statistics (biased variance) and affine `gamma`, `beta` (`[C]`).
/// Multiplying `gamma` and `beta` by a 0/1 channel mask before the call gives the reference's
/// `MaskedStatelessBatchNorm`: masked channels come out exactly 0 with zero γ/β gradients.
pub fn batch_norm_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    batch_norm_act(x, gamma, beta, eps, Activation::None)
}

/// [`batch_norm_train`] followed by `act`, in one pass forward and one backward (ReLU and
/// h-swish of a masked channel are 0, so masked channels stay exactly 0).
pub fn batch_norm_act(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
) -> Result<Tensor> {
    if !custom(x) {
        return batch_norm_act_candle(x, gamma, beta, eps, act);
    }
    let op = BatchNormTrain { eps, act, stats: Arc::new(OnceLock::new()) };
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)
}

/// [`batch_norm_act`] from Candle's own ops, on any device: the batch's mean and biased
/// variance per channel, the affine transform, then `act`.
pub fn batch_norm_act_candle(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let mean = x.mean_keepdim((0, 2, 3))?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim((0, 2, 3))?;
    let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    let z = xhat
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    match act {
        Activation::None => Ok(z),
        Activation::Relu => z.relu(),
        Activation::HSwish => hswish(&z),
    }
}

/// A 1×1 convolution as a batched matmul: x `[N, Cin, H, W]`, w `[Cout, Cin]` → `[N, Cout, H, W]`.
pub fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, cin, h, wd) = x.dims4()?;
    let (cout, wcin) = w.dims2()?;
    if wcin != cin {
        bail!("1×1 conv: weight [{cout}, {wcin}] does not fit {cin} input channels");
    }
    if n == 1 {
        return w.matmul(&x.reshape((cin, h * wd))?)?.reshape((1, cout, h, wd));
    }
    // One gemm over the whole batch, [Cout, Cin] × [Cin, N·HW], instead of N small ones: its
    // weight gradient is one gemm too, not N partial gradients summed afterwards.
    let xt = x.reshape((n, cin, h * wd))?.transpose(0, 1)?.contiguous()?;
    let y = w.matmul(&xt.reshape((cin, n * h * wd))?)?;
    y.reshape((cout, n, h * wd))?.transpose(0, 1)?.contiguous()?.reshape((n, cout, h, wd))
}

/// Zero-pads x `[N, C, H, W]` for a k×k window at `stride` with TF "SAME" padding (the extra
/// row and column go bottom/right).
pub fn pad_same(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (oh, pt) = same_padding(h, k, stride);
    let (ow, pl) = same_padding(w, k, stride);
    let pb = ((oh - 1) * stride + k).saturating_sub(h) - pt;
    let pr = ((ow - 1) * stride + k).saturating_sub(w) - pl;
    x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)
}

/// A full k×k convolution with TF "SAME" padding (the stem): x `[N, Cin, H, W]`,
/// w `[Cout, Cin, K, K]`, Candle's conv2d on an explicitly padded input.
pub fn conv2d_same(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, _, k, _) = w.dims4()?;
    pad_same(x, k, stride)?.conv2d(w, 0, stride, 1, 1)
}

/// h-swish: `x · relu6(x + 3) / 6`.
pub fn hswish(x: &Tensor) -> Result<Tensor> {
    x.mul(&(x + 3.0)?.clamp(0f32, 6f32)?.affine(1.0 / 6.0, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed;
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    /// Reference depthwise: Candle's conv2d with groups = C on an explicitly padded input.
    fn native_dw(x: &Tensor, w: &Tensor, stride: usize) -> Tensor {
        let (c, k, _) = w.dims3().unwrap();
        let xp = pad_same(x, k, stride).unwrap();
        xp.conv2d(&w.reshape((c, 1, k, k)).unwrap(), 0, stride, 1, c).unwrap()
    }

    #[test]
    fn depthwise_matches_candle_grouped_conv_forward_and_gradients() {
        let mut seed = 1;
        for &(n, c, h, w) in &[(2, 3, 8, 8), (3, 5, 7, 9), (2, 4, 6, 5)] {
            for k in [3, 5, 7] {
                for stride in [1, 2] {
                    for masked in [false, true] {
                        seed += 1;
                        let x = Var::from_tensor(&rand(&[n, c, h, w], seed)).unwrap();
                        let wv = Var::from_tensor(&rand(&[c, k, k], seed + 100)).unwrap();
                        // A channel mask on the weight (the supernet's expansion mask).
                        let mask: Vec<f32> =
                            (0..c).map(|i| if masked && i >= c / 2 { 0.0 } else { 1.0 }).collect();
                        let mask = Tensor::from_vec(mask, (c, 1, 1), &Device::Cpu).unwrap();
                        let weff = wv.as_tensor().broadcast_mul(&mask).unwrap();
                        let probe = rand(&[n, c, h.div_ceil(stride), w.div_ceil(stride)], seed + 7);

                        let ours = depthwise_conv2d(x.as_tensor(), &weff, stride).unwrap();
                        // The other devices' path: Candle's own ops, shifted taps.
                        let taps = with_candle_kernels(|| {
                            depthwise_conv2d(x.as_tensor(), &weff, stride).unwrap()
                        });
                        let theirs = native_dw(x.as_tensor(), &weff, stride);
                        for (what, y) in [("custom", &ours), ("taps", &taps)] {
                            assert!(
                                max_diff(y, &theirs) < 1e-4,
                                "{what} forward {n}x{c}x{h}x{w} k{k} s{stride}"
                            );
                        }

                        let g1 = ours.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
                        let g2 = theirs.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
                        let g3 = taps.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
                        for v in [&x, &wv] {
                            let b = g2.get(v.as_tensor()).unwrap();
                            for (what, g) in [("custom", &g1), ("taps", &g3)] {
                                let a = g.get(v.as_tensor()).unwrap();
                                assert!(
                                    max_diff(a, b) < 1e-4,
                                    "{what} gradient k{k} s{stride} masked {masked}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reference batch norm from basic Candle ops (what other devices run).
    fn native_bn(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        batch_norm_act_candle(x, g, b, eps, Activation::None).unwrap()
    }

    #[test]
    fn fused_batch_norm_matches_basic_ops_forward_and_gradients() {
        for (i, &(n, c, h, w)) in [(4, 3, 5, 5), (2, 6, 4, 7), (8, 2, 1, 1)].iter().enumerate() {
            for masked in [false, true] {
                let seed = 50 + i as u64 * 10 + u64::from(masked);
                let x =
                    Var::from_tensor(&rand(&[n, c, h, w], seed).affine(3.0, 1.0).unwrap()).unwrap();
                let g = Var::from_tensor(&rand(&[c], seed + 1)).unwrap();
                let b = Var::from_tensor(&rand(&[c], seed + 2)).unwrap();
                let mask: Vec<f32> =
                    (0..c).map(|i| if masked && i + 1 == c { 0.0 } else { 1.0 }).collect();
                let mask = Tensor::new(mask.as_slice(), &Device::Cpu).unwrap();
                let gm = g.as_tensor().mul(&mask).unwrap();
                let bm = b.as_tensor().mul(&mask).unwrap();
                let probe = rand(&[n, c, h, w], seed + 3);
                let ours = batch_norm_train(x.as_tensor(), &gm, &bm, 1e-3).unwrap();
                let theirs = native_bn(x.as_tensor(), &gm, &bm, 1e-3);
                assert!(max_diff(&ours, &theirs) < 1e-4);
                if masked {
                    let last = ours.narrow(1, c - 1, 1).unwrap().abs().unwrap();
                    assert_eq!(last.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
                }
                let g1 = ours.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = theirs.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
                for v in [&x, &g, &b] {
                    let a = g1.get(v.as_tensor()).unwrap();
                    let r = g2.get(v.as_tensor()).unwrap();
                    assert!(max_diff(a, r) < 1e-4, "bn gradient {n}x{c}x{h}x{w} masked {masked}");
                }
            }
        }
    }

    #[test]
    fn fused_batch_norm_activation_matches_separate_ops_forward_and_gradients() {
        for act in [Activation::Relu, Activation::HSwish] {
            let (n, c, h, w) = (4, 5, 3, 4);
            let x = Var::from_tensor(&rand(&[n, c, h, w], 71).affine(4.0, 0.5).unwrap()).unwrap();
            let g = Var::from_tensor(&rand(&[c], 72).affine(2.0, 0.0).unwrap()).unwrap();
            let b = Var::from_tensor(&rand(&[c], 73).affine(3.0, 0.0).unwrap()).unwrap();
            let probe = rand(&[n, c, h, w], 74);
            let ours = batch_norm_act(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-3, act);
            let ours = ours.unwrap();
            let z = native_bn(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-3);
            let theirs = match act {
                Activation::Relu => z.relu().unwrap(),
                _ => hswish(&z).unwrap(),
            };
            assert!(max_diff(&ours, &theirs) < 1e-4, "{act:?} forward");
            let g1 = ours.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = theirs.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &g, &b] {
                let a = g1.get(v.as_tensor()).unwrap();
                let r = g2.get(v.as_tensor()).unwrap();
                assert!(max_diff(a, r) < 1e-4, "{act:?} gradient");
            }
        }
    }

    #[test]
    fn conv1x1_and_same_conv_match_candle_conv2d() {
        let one = rand(&[1, 4, 5, 6], 8);
        let w1 = rand(&[3, 4], 10);
        let want = one.conv2d(&w1.reshape((3, 4, 1, 1)).unwrap(), 0, 1, 1, 1).unwrap();
        assert!(max_diff(&conv1x1(&one, &w1).unwrap(), &want) < 1e-5, "batch of one");
        let x = Var::from_tensor(&rand(&[2, 4, 5, 6], 9)).unwrap();
        let w = Var::from_tensor(&rand(&[3, 4], 10)).unwrap();
        let ours = conv1x1(x.as_tensor(), w.as_tensor()).unwrap();
        let theirs =
            x.as_tensor().conv2d(&w.as_tensor().reshape((3, 4, 1, 1)).unwrap(), 0, 1, 1, 1);
        let theirs = theirs.unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let g1 = ours.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = theirs.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            let b = g2.get(v.as_tensor()).unwrap().reshape(v.dims()).unwrap();
            assert!(max_diff(g1.get(v.as_tensor()).unwrap(), &b) < 1e-4);
        }
        // SAME on an even input with stride 2 pads bottom/right: output 3×3 from 6×6, k3.
        let x = rand(&[1, 2, 6, 6], 11);
        let w = rand(&[4, 2, 3, 3], 12);
        let y = conv2d_same(&x, &w, 2).unwrap();
        assert_eq!(y.dims(), &[1, 4, 3, 3]);
        let _ = y.sum(D::Minus1).unwrap();
    }

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(same_padding(224, 3, 2), (112, 0));
        assert_eq!(same_padding(112, 5, 1), (112, 2));
        assert_eq!(same_padding(7, 3, 2), (4, 1));
    }
}

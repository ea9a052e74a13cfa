//! Where a figure is drawn: PNG (plotters' bitmap backend, encoded by `png`) or SVG, chosen
//! by the output's extension, with the embedded DejaVu Sans font registered once (PNG text
//! is rasterised by ab_glyph, so no system font is needed at run time).

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans 2.37 (assets/fonts/README.md has its origin and license).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The font family every figure uses.
pub const FONT_FAMILY: &str = "sans-serif";

/// Image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Portable Network Graphics (RGB).
    Png,
    /// Scalable Vector Graphics.
    Svg,
}

impl Format {
    /// The format a file name asks for (`.png` or `.svg`).
    pub fn of_path(path: &Path) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("png") => Ok(Format::Png),
            Some(e) if e.eq_ignore_ascii_case("svg") => Ok(Format::Svg),
            _ => bail!("{}: the output must end in .png or .svg", path.display()),
        }
    }
}

/// A figure: draws itself on any plotters backend and returns what it computed (axis
/// ranges, counts), so that callers and tests can check them against the data.
pub trait Figure {
    /// What drawing reports.
    type Out;
    /// Draw on `area` (already filled white).
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<Self::Out>;
}

/// Register the embedded font (idempotent).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font parses"));
    });
}

/// Turn a plotters error (generic over the backend) into an anyhow error.
pub fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// A drawn figure in memory.
pub struct Rendered<T> {
    /// The encoded image (PNG bytes or SVG text).
    pub bytes: Vec<u8>,
    /// What the figure reported.
    pub out: T,
}

/// Draw `fig` at `size` pixels into an encoded image of `format`.
pub fn render<F: Figure>(fig: &F, size: (u32, u32), format: Format) -> Result<Rendered<F::Out>> {
    register_font();
    match format {
        Format::Svg => {
            let mut s = String::new();
            let out = {
                let area = SVGBackend::with_string(&mut s, size).into_drawing_area();
                area.fill(&WHITE).map_err(plot_err)?;
                let out = fig.draw(&area)?;
                area.present().map_err(plot_err)?;
                out
            };
            Ok(Rendered {
                bytes: s.into_bytes(),
                out,
            })
        }
        Format::Png => {
            let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
            let out = {
                let area = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
                area.fill(&WHITE).map_err(plot_err)?;
                let out = fig.draw(&area)?;
                area.present().map_err(plot_err)?;
                out
            };
            Ok(Rendered {
                bytes: encode_png(&rgb, size)?,
                out,
            })
        }
    }
}

/// Draw `fig` into `path` (format by extension); returns what the figure reported.
pub fn render_to_file<F: Figure>(fig: &F, size: (u32, u32), path: &Path) -> Result<F::Out> {
    let r = render(fig, size, Format::of_path(path)?)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, &r.bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(r.out)
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // adaptive filtering at the default level: small files for flat-coloured charts
        enc.set_compression(png::Compression::Default);
        let mut writer = enc.write_header().context("encoding PNG")?;
        writer.write_image_data(rgb).context("encoding PNG")?;
    }
    Ok(bytes)
}

/// Text style of the given size in the embedded font.
pub fn text(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().into()
}

//! The harvest report's chart: core-hours per PC per night (noon to noon, local time), as grouped bars with
//! a title, axis labels, a scale and a legend. The layout is a list of shapes drawn either as
//! SVG text or into an RGB raster encoded as PNG (an 8x8 bitmap font, `font8x8`, and zlib
//! from `miniz_oxide`: no font files, no system libraries).

use crate::report::Report;
use std::fmt::Write as _;

type Rgb = [u8; 3];

const PALETTE: [Rgb; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];
const BLACK: Rgb = [0, 0, 0];
const GREY: Rgb = [200, 200, 200];
const WHITE: Rgb = [255, 255, 255];

/// How text is placed relative to its x.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

#[derive(Clone, Debug, PartialEq)]
enum Shape {
    Rect {
        x: i64,
        y: i64,
        w: i64,
        h: i64,
        fill: Rgb,
    },
    /// Text with its baseline's left, middle or end at (x, y); `scale` x 8 px high.
    Text {
        x: i64,
        y: i64,
        text: String,
        scale: i64,
        anchor: Anchor,
        /// Rotated 90° counter-clockwise (the y axis label).
        vertical: bool,
    },
}

/// A "nice" step for about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The chart's shapes for `r` at `w` x `h` pixels.
fn layout(r: &Report, w: u32, h: u32) -> Vec<Shape> {
    let (w, h) = (i64::from(w), i64::from(h));
    let scale = if w >= 1200 && h >= 700 { 2 } else { 1 };
    let ch = 8 * scale; // character height and width
    let mut s = vec![Shape::Rect {
        x: 0,
        y: 0,
        w,
        h,
        fill: WHITE,
    }];
    let title = "core-hours given per PC per night (local time)";
    s.push(Shape::Text {
        x: w / 2,
        y: ch + 6,
        text: title.into(),
        scale,
        anchor: Anchor::Middle,
        vertical: false,
    });
    let max = r
        .nights
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max);
    let step = nice_step(if max > 0.0 { max } else { 1.0 }, 5.0);
    let top_v = (if max > 0.0 { max } else { 1.0 } / step).ceil() * step;
    let label = |v: f64| {
        if step >= 1.0 {
            format!("{v:.0}")
        } else if step >= 0.1 {
            format!("{v:.1}")
        } else {
            format!("{v:.3}")
        }
    };
    let ylab_w = (label(top_v).len() as i64 + 1) * ch;
    let legend_w = r
        .pcs
        .iter()
        .map(|p| p.node.len() as i64)
        .max()
        .unwrap_or(0)
        .min(20)
        * ch
        + 3 * ch;
    let (left, right) = (ch * 2 + ylab_w, w - legend_w - ch);
    let (top, bottom) = (ch * 3 + 6, h - ch * 4);
    if right <= left + 10 || bottom <= top + 10 {
        return s;
    }
    // Grid and y scale.
    let mut v = 0.0;
    while v <= top_v + step / 2.0 {
        let y = bottom - ((v / top_v) * (bottom - top) as f64).round() as i64;
        s.push(Shape::Rect {
            x: left,
            y,
            w: right - left,
            h: 1,
            fill: GREY,
        });
        s.push(Shape::Text {
            x: left - ch / 2,
            y: y + ch / 2,
            text: label(v),
            scale,
            anchor: Anchor::End,
            vertical: false,
        });
        v += step;
    }
    s.push(Shape::Text {
        x: ch,
        y: (top + bottom) / 2,
        text: "core-hours".into(),
        scale,
        anchor: Anchor::Middle,
        vertical: true,
    });
    s.push(Shape::Text {
        x: (left + right) / 2,
        y: h - ch / 2 - 2,
        text: "night (noon to noon, local time of this computer)".into(),
        scale,
        anchor: Anchor::Middle,
        vertical: false,
    });
    // Axes.
    s.push(Shape::Rect {
        x: left,
        y: top,
        w: 1,
        h: bottom - top + 1,
        fill: BLACK,
    });
    s.push(Shape::Rect {
        x: left,
        y: bottom,
        w: right - left,
        h: 1,
        fill: BLACK,
    });
    // Bars.
    let nnights = r.nights.len().max(1) as i64;
    let npcs = r.pcs.len().max(1) as i64;
    let group = (right - left) / nnights;
    // Bars at most 48 px (x scale) wide, each night's group centred in its slot.
    let bar = ((group * 8 / 10) / npcs).clamp(1, 48 * scale);
    let inset = (group - bar * npcs) / 2;
    let every = ((nnights * 11 * ch) / (right - left).max(1) + 1).max(1);
    for (di, (night, vals)) in r.nights.iter().enumerate() {
        let gx = left + di as i64 * group + inset;
        for (pi, val) in vals.iter().enumerate() {
            let bh = ((val / top_v) * (bottom - top) as f64).round() as i64;
            if bh > 0 {
                s.push(Shape::Rect {
                    x: gx + pi as i64 * bar,
                    y: bottom - bh,
                    w: bar,
                    h: bh,
                    fill: PALETTE[pi % PALETTE.len()],
                });
            }
        }
        if di as i64 % every == 0 {
            s.push(Shape::Text {
                x: left + di as i64 * group + group / 2,
                y: bottom + ch + 4,
                text: night.clone(),
                scale,
                anchor: Anchor::Middle,
                vertical: false,
            });
        }
    }
    if r.nights.is_empty() {
        s.push(Shape::Text {
            x: (left + right) / 2,
            y: (top + bottom) / 2,
            text: "no core-hours given in this period".into(),
            scale,
            anchor: Anchor::Middle,
            vertical: false,
        });
    }
    // Legend.
    for (pi, p) in r.pcs.iter().enumerate() {
        let y = top + pi as i64 * (ch + 6);
        s.push(Shape::Rect {
            x: right + ch,
            y,
            w: ch,
            h: ch,
            fill: PALETTE[pi % PALETTE.len()],
        });
        let name: String = p.node.chars().take(20).collect();
        s.push(Shape::Text {
            x: right + ch * 5 / 2,
            y: y + ch,
            text: name,
            scale,
            anchor: Anchor::Start,
            vertical: false,
        });
    }
    s
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as an SVG document of `w` x `h` pixels.
pub fn svg(r: &Report, w: u32, h: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="monospace">"#
    );
    for shape in layout(r, w, h) {
        match shape {
            Shape::Rect { x, y, w, h, fill } => {
                let _ = writeln!(
                    out,
                    r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{}"/>"#,
                    hex(fill)
                );
            }
            Shape::Text {
                x,
                y,
                text,
                scale,
                anchor,
                vertical,
            } => {
                let a = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let rot = if vertical {
                    format!(r#" transform="rotate(-90 {x} {y})""#)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    r#"<text x="{x}" y="{y}" font-size="{}" text-anchor="{a}"{rot}>{}</text>"#,
                    10 * scale,
                    xml_escape(&text)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// An RGB raster.
struct Canvas {
    w: i64,
    h: i64,
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            let i = ((y * self.w + x) * 3) as usize;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y.max(0)..(y + h).min(self.h) {
            for xx in x.max(0)..(x + w).min(self.w) {
                self.set(xx, yy, c);
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, anchor: Anchor, vertical: bool) {
        let n = text.chars().count() as i64;
        let len = n * 8 * scale;
        let off = match anchor {
            Anchor::Start => 0,
            Anchor::Middle => len / 2,
            Anchor::End => len,
        };
        for (i, ch) in text.chars().enumerate() {
            let code = ch as usize;
            let glyph = if code < 128 {
                font8x8::legacy::BASIC_LEGACY[code]
            } else {
                font8x8::legacy::BASIC_LEGACY[b'?' as usize]
            };
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) == 0 {
                        continue;
                    }
                    // Glyph pixel (gx, gy) relative to the text's start on the baseline.
                    let gx = i as i64 * 8 * scale + col * scale - off;
                    let gy = row as i64 * scale - 8 * scale;
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = if vertical {
                                (x + gy + dy, y - gx - dx)
                            } else {
                                (x + gx + dx, y + gy + dy)
                            };
                            self.set(px, py, BLACK);
                        }
                    }
                }
            }
        }
    }
}

/// The chart as a PNG file of exactly `w` x `h` pixels (8-bit RGB).
pub fn png(r: &Report, w: u32, h: u32) -> Vec<u8> {
    let mut c = Canvas {
        w: i64::from(w),
        h: i64::from(h),
        px: vec![255; w as usize * h as usize * 3],
    };
    for shape in layout(r, w, h) {
        match shape {
            Shape::Rect { x, y, w, h, fill } => c.rect(x, y, w, h, fill),
            Shape::Text {
                x,
                y,
                text,
                scale,
                anchor,
                vertical,
            } => c.text(x, y, &text, scale, anchor, vertical),
        }
    }
    encode_png(w, h, &c.px)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// PNG of 8-bit RGB pixels (rows top to bottom, no filter).
fn encode_png(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let row = w as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * h as usize);
    for line in rgb.chunks(row) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6),
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::PcFigures;

    fn report() -> Report {
        let pc = |n: &str| PcFigures {
            node: n.into(),
            core_hours: 1.0,
            suspensions: 0,
            vacates: 0,
            releases: 0,
            release_p50_ms: None,
            release_p99_ms: None,
            offered_core_hours: 0.0,
            used_core_hours: 0.0,
        };
        Report {
            since_ms: 0,
            now_ms: 0,
            pcs: vec![pc("pc1"), pc("pc2")],
            nights: vec![("2026-12-01".into(), vec![1.5, 0.5])],
        }
    }

    #[test]
    fn png_has_the_size_and_decodes_back() {
        let p = png(&report(), 640, 400);
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(p[16..20].try_into().unwrap()), 640);
        assert_eq!(u32::from_be_bytes(p[20..24].try_into().unwrap()), 400);
        // The IDAT inflates back to 400 rows of a filter byte and 640 RGB pixels, some of
        // them the first PC's bar colour.
        let len = u32::from_be_bytes(p[33..37].try_into().unwrap()) as usize;
        assert_eq!(&p[37..41], b"IDAT");
        let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&p[41..41 + len]).unwrap();
        assert_eq!(raw.len(), 400 * (1 + 640 * 3));
        assert!(raw.chunks(3).any(|c| c == PALETTE[0]));
        // The known CRC of "IEND".
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }

    #[test]
    fn svg_has_the_size_title_and_legend() {
        let s = svg(&report(), 800, 500);
        assert!(
            s.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="800" height="500""#)
        );
        assert!(s.contains("core-hours given per PC per night (local time)"));
        assert!(s.contains(">pc2</text>"));
        assert!(s.contains(&hex(PALETTE[1])));
    }
}

//! The recovery sheet as a PDF: vector QR codes and the PDF base-14 fonts (Helvetica, Courier),
//! so no font file is needed and the codes print sharp at any size.
//!
//! The payloads of the codes are also stored, as plain text, in an unreferenced stream of the
//! PDF (between [`CODES_BEGIN`] and [`CODES_END`]), so `caretaker config from-qr sheet.pdf`
//! can read the file it wrote without rasterising it. Paper carries the codes only.

use crate::chunk::{self, Code};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use qrcode::{Color, EcLevel, QrCode};

pub const CODES_BEGIN: &str = "%caretaker-recovery-codes-begin";
pub const CODES_END: &str = "%caretaker-recovery-codes-end";

const W: f32 = 595.28; // A4
const H: f32 = 841.89;
const MARGIN: f32 = 40.0;
const MONO_SIZE: f32 = 8.0;
const MONO_LEADING: f32 = 9.6;
/// Courier is 0.6 em wide: 8 pt × 0.6 × 106 ≈ 509 pt, the text column.
const MONO_COLS: usize = 106;
const QR_SIZE: f32 = 215.0;
const QR_COLS: usize = 2;
const QR_ROWS: usize = 3;

/// What the sheet says about the app.
#[derive(Debug, Clone)]
pub struct SheetInfo {
    pub app: String,
    pub domain: Option<String>,
    /// When it was printed, as the operator should read it (e.g. `2026-12-04 21:03 UTC`).
    pub date: String,
    /// Where the config lives on the server, printed in the recovery steps.
    pub config_path: String,
    /// Warnings printed in bold under the header (e.g. secrets the config only points at).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("QR code {index} of {total} could not be encoded: {reason}")]
pub struct RenderError {
    pub index: u32,
    pub total: u32,
    pub reason: String,
}

/// Renders the whole sheet.
pub fn render(info: &SheetInfo, config: &[u8]) -> Result<Vec<u8>, RenderError> {
    let codes = chunk::encode(config, chunk::DEFAULT_CHUNK);
    let sha = chunk::sha256_hex(config);
    let mut qrs = Vec::with_capacity(codes.len());
    for c in &codes {
        let qr = QrCode::with_error_correction_level(c.payload.as_bytes(), EcLevel::M).map_err(|e| RenderError {
            index: c.index,
            total: c.total,
            reason: e.to_string(),
        })?;
        qrs.push(qr);
    }
    let text = String::from_utf8_lossy(config);
    let mut pages: Vec<Vec<u8>> = text_pages(info, &text, &sha, config.len(), codes.len());
    pages.extend(qr_pages(info, &codes, &qrs, &sha));
    let count = pages.len();

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let (helv, bold, mono) = (Ref::new(3), Ref::new(4), Ref::new(5));
    let codes_stream = Ref::new(6);
    let info_ref = Ref::new(7);
    let first_page = 10;
    pdf.catalog(catalog).pages(tree);
    let kids: Vec<Ref> = (0..count).map(|i| Ref::new(first_page + 2 * i as i32)).collect();
    pdf.pages(tree).kids(kids.iter().copied()).count(count as i32);
    for (id, name) in [(helv, "Helvetica"), (bold, "Helvetica-Bold"), (mono, "Courier")] {
        pdf.type1_font(id).base_font(Name(name.as_bytes())).encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    for (i, content) in pages.into_iter().enumerate() {
        let page_id = Ref::new(first_page + 2 * i as i32);
        let content_id = Ref::new(first_page + 2 * i as i32 + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, W, H)).parent(tree).contents(content_id);
        let mut res = page.resources();
        let mut fonts = res.fonts();
        fonts.pair(Name(b"F1"), helv).pair(Name(b"F2"), bold).pair(Name(b"F3"), mono);
        fonts.finish();
        res.finish();
        page.finish();
        pdf.stream(content_id, &content);
    }
    let mut embedded = format!("{CODES_BEGIN}\n");
    for c in &codes {
        embedded.push_str(&c.payload);
        embedded.push('\n');
    }
    embedded.push_str(CODES_END);
    embedded.push('\n');
    pdf.stream(codes_stream, embedded.as_bytes());
    pdf.document_info(info_ref)
        .title(pdf_writer::TextStr(&format!("caretaker recovery sheet: {}", info.app)))
        .creator(pdf_writer::TextStr("caretaker config sheet"));
    Ok(pdf.finish())
}

/// The payloads caretaker stored in its own PDF, if this is one.
pub fn embedded_payloads(pdf: &[u8]) -> Option<Vec<String>> {
    let begin = find(pdf, CODES_BEGIN.as_bytes())?;
    let rest = &pdf[begin + CODES_BEGIN.len()..];
    let end = find(rest, CODES_END.as_bytes())?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    Some(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Text for a base-14 font with WinAnsiEncoding: Latin-1 passes, anything else prints `?`
/// (the QR codes carry the exact bytes).
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c as u32 {
            0x20..=0x7e | 0xa0..=0xff => c as u32 as u8,
            0x09 => b' ',
            _ => b'?',
        })
        .collect()
}

struct Writer {
    pages: Vec<Vec<u8>>,
    content: Content,
    y: f32,
}

impl Writer {
    fn new() -> Self {
        Writer { pages: Vec::new(), content: Content::new(), y: H - MARGIN }
    }
    fn text(&mut self, font: &[u8], size: f32, x: f32, s: &str) {
        self.content.begin_text().set_font(Name(font), size).next_line(x, self.y).show(Str(&win_ansi(s))).end_text();
    }
    fn line(&mut self, font: &[u8], size: f32, s: &str) {
        self.ensure(size * 1.3);
        self.y -= size * 1.3;
        self.text(font, size, MARGIN, s);
    }
    /// Helvetica text wrapped at roughly `cols` characters.
    fn para(&mut self, font: &[u8], size: f32, s: &str) {
        let cols = (((W - 2.0 * MARGIN) / (size * 0.5)) as usize).max(20);
        for l in wrap_words(s, cols) {
            self.line(font, size, &l);
        }
    }
    fn gap(&mut self, h: f32) {
        self.y -= h;
    }
    fn ensure(&mut self, h: f32) {
        if self.y - h < MARGIN + 20.0 {
            self.break_page();
        }
    }
    fn break_page(&mut self) {
        let c = std::mem::replace(&mut self.content, Content::new());
        self.pages.push(c.finish());
        self.y = H - MARGIN;
    }
    fn finish(mut self) -> Vec<Vec<u8>> {
        self.break_page();
        self.pages
    }
}

fn wrap_words(s: &str, cols: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for w in s.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + w.chars().count() > cols {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    out.push(cur);
    out
}

fn text_pages(info: &SheetInfo, text: &str, sha: &str, len: usize, codes: usize) -> Vec<Vec<u8>> {
    let mut w = Writer::new();
    w.line(b"F2", 18.0, &format!("caretaker recovery sheet: {}", info.app));
    w.gap(4.0);
    w.line(b"F1", 10.0, &format!("App: {}", info.app));
    w.line(b"F1", 10.0, &format!("Domain: {}", info.domain.as_deref().unwrap_or("(none in the config)")));
    w.line(b"F1", 10.0, &format!("Printed: {}", info.date));
    w.line(b"F1", 10.0, &format!("Config: {} ({len} bytes, {codes} QR codes)", info.config_path));
    w.line(b"F1", 10.0, "SHA-256 of the config:");
    w.line(b"F3", 10.0, sha);
    w.gap(6.0);
    w.para(
        b"F2",
        10.0,
        "This sheet holds every secret of the app, the backup repository password included. \
         Whoever holds it can read and delete the backups. Keep it locked away, offline; shred old copies.",
    );
    for n in &info.notes {
        w.gap(4.0);
        w.para(b"F2", 10.0, n);
    }
    w.gap(6.0);
    w.line(b"F2", 12.0, "How to recover on a new machine");
    let steps = [
        "1. Install caretaker: copy the caretaker binary (this version or newer) to /usr/local/bin/caretaker."
            .to_string(),
        format!(
            "2. Rebuild the config: scan every QR code of this sheet (phone or scanner, PNG or JPEG files, \
             several codes per image are fine; any ONE code may be missing or unreadable), then run:  \
             caretaker config from-qr --out {} SCAN1.png SCAN2.png ...  It checks the SHA-256 above and \
             writes the file readable by root only. Without a scanner, type the config from the text below \
             and compare its sha256sum with the one above.",
            info.config_path
        ),
        format!(
            "3. Restore the app: caretaker --config {} recover   then   caretaker install-systemd  and  \
             systemctl enable --now caretaker-{}.service",
            info.config_path, info.app
        ),
    ];
    for s in &steps {
        w.para(b"F1", 10.0, s);
        w.gap(2.0);
    }
    w.gap(6.0);
    w.line(b"F2", 12.0, "The config");
    w.line(
        b"F1",
        8.0,
        &format!("Lines longer than {MONO_COLS} characters continue on the next line, marked >> in the margin."),
    );
    w.gap(2.0);
    for line in text.split('\n') {
        let chars: Vec<char> = line.chars().collect();
        let pieces: Vec<String> = if chars.is_empty() {
            vec![String::new()]
        } else {
            chars.chunks(MONO_COLS).map(|c| c.iter().collect()).collect()
        };
        for (i, p) in pieces.iter().enumerate() {
            w.ensure(MONO_LEADING);
            w.y -= MONO_LEADING;
            if i > 0 {
                w.content
                    .begin_text()
                    .set_font(Name(b"F1"), 7.0)
                    .next_line(MARGIN - 14.0, w.y)
                    .show(Str(b">>"))
                    .end_text();
            }
            w.text(b"F3", MONO_SIZE, MARGIN, p);
        }
    }
    let mut pages = w.finish();
    footers(&mut pages, info, sha, "config");
    pages
}

fn footers(pages: &mut [Vec<u8>], info: &SheetInfo, sha: &str, part: &str) {
    let n = pages.len();
    for (i, p) in pages.iter_mut().enumerate() {
        let mut c = Content::new();
        let s = format!("caretaker recovery sheet: {}, {part} page {} of {n}, SHA-256 {}", info.app, i + 1, &sha[..12]);
        c.begin_text().set_font(Name(b"F1"), 7.0).next_line(MARGIN, MARGIN - 12.0).show(Str(&win_ansi(&s))).end_text();
        p.extend_from_slice(b"\n");
        p.extend_from_slice(&c.finish());
    }
}

fn qr_pages(info: &SheetInfo, codes: &[Code], qrs: &[QrCode], sha: &str) -> Vec<Vec<u8>> {
    let per_page = QR_COLS * QR_ROWS;
    let cell_w = (W - 2.0 * MARGIN) / QR_COLS as f32;
    let top = H - MARGIN - 40.0;
    let cell_h = (top - MARGIN - 10.0) / QR_ROWS as f32;
    // One module size for all codes (that of the largest): rqrr misreads a page whose codes
    // have modules of different sizes.
    let module = QR_SIZE / (qrs.iter().map(|q| q.width()).max().unwrap_or(21) + 8) as f32;
    let mut pages = Vec::new();
    for (p, group) in codes.chunks(per_page).enumerate() {
        let mut w = Writer::new();
        w.line(b"F2", 12.0, &format!("QR codes of the config: scan all {} (any one may be missing)", codes.len()));
        w.line(b"F1", 8.0, &format!("Format {}, error correction M, SHA-256 {}", chunk::FORMAT, sha));
        for (k, code) in group.iter().enumerate() {
            let qr = &qrs[p * per_page + k];
            let (col, row) = (k % QR_COLS, k / QR_COLS);
            let x = MARGIN + col as f32 * cell_w + (cell_w - QR_SIZE) / 2.0;
            let y_top = top - row as f32 * cell_h;
            let label = if code.is_parity() {
                format!("Code {} of {} (parity)", code.index, code.total)
            } else {
                format!("Code {} of {}", code.index, code.total)
            };
            w.content
                .begin_text()
                .set_font(Name(b"F2"), 10.0)
                .next_line(x + 8.0, y_top - 10.0)
                .show(Str(label.as_bytes()))
                .end_text();
            draw_qr(&mut w.content, qr, x, y_top - 14.0, module);
        }
        pages.extend(w.finish());
    }
    footers(&mut pages, info, sha, "QR");
    pages
}

/// Draws the code, its top-left corner (quiet zone included) at (`x`, `top`), as filled
/// rectangles of `m` points per module (horizontal runs merged).
fn draw_qr(c: &mut Content, qr: &QrCode, x: f32, top: f32, m: f32) {
    let n = qr.width();
    let colors = qr.to_colors();
    c.set_fill_gray(0.0);
    for row in 0..n {
        let mut col = 0;
        while col < n {
            if colors[row * n + col] == Color::Dark {
                let start = col;
                while col < n && colors[row * n + col] == Color::Dark {
                    col += 1;
                }
                let px = x + (start + 4) as f32 * m;
                let py = top - (row + 5) as f32 * m;
                c.rect(px, py, (col - start) as f32 * m, m);
            } else {
                col += 1;
            }
        }
    }
    c.fill_nonzero();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pdf_carries_its_payloads_and_the_base14_fonts_only() {
        let info = SheetInfo {
            app: "shop".into(),
            domain: Some("shop.example.org".into()),
            date: "2026-12-04 21:00 UTC".into(),
            config_path: "/etc/caretaker/caretaker.yml".into(),
            notes: vec![],
        };
        let cfg = b"version: 1\napp:\n  name: shop\n".repeat(50);
        let pdf = render(&info, &cfg).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let got = embedded_payloads(&pdf).unwrap();
        let want: Vec<String> = chunk::encode(&cfg, chunk::DEFAULT_CHUNK).into_iter().map(|c| c.payload).collect();
        assert_eq!(got, want);
        assert!(find(&pdf, b"/FontFile").is_none());
        assert!(find(&pdf, b"/Courier").is_some());
    }
}

//! Reading codes back: QR codes in PNG/JPEG scans (rqrr, pure Rust), or the payloads
//! caretaker stored in its own PDF.

use crate::chunk::{self, Parsed};
use crate::pdf;
use std::path::{Path, PathBuf};

/// One QR code found in an image.
#[derive(Debug, Clone)]
pub struct Found {
    /// The decoded text, or why the code could not be decoded.
    pub payload: Result<String, String>,
    /// Corners of the code in the image, in pixels.
    pub bounds: [(i32, i32); 4],
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is a PDF that caretaker did not write (print it and scan the codes, or render its pages, e.g. with pdftoppm -png)")]
    ForeignPdf { path: PathBuf },
}

/// Every QR code in one image. rqrr sometimes pairs the finder patterns of neighbouring codes
/// on a page of several; so each code read is blanked out and the image searched again, until
/// a pass reads nothing new.
pub fn scan_image(img: &image::DynamicImage) -> Vec<Found> {
    let mut grey = img.to_luma8();
    let mut read: Vec<Found> = Vec::new();
    let mut failed: Vec<Found> = Vec::new();
    for _ in 0..64 {
        let mut prepared = rqrr::PreparedImage::prepare(grey.clone());
        let mut progress = false;
        failed.clear();
        for g in prepared.detect_grids() {
            let found = Found {
                payload: g.decode().map(|(_, s)| s).map_err(|e| e.to_string()),
                bounds: g.bounds.map(|p| (p.x, p.y)),
            };
            if found.payload.is_ok() {
                blank(&mut grey, &found.bounds);
                progress = true;
                read.push(found);
            } else {
                failed.push(found);
            }
        }
        if !progress {
            break;
        }
    }
    read.extend(failed);
    read
}

/// Paints the bounding box of a code white.
fn blank(img: &mut image::GrayImage, bounds: &[(i32, i32); 4]) {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let x0 = bounds.iter().map(|p| p.0).min().unwrap_or(0).clamp(0, w);
    let x1 = bounds.iter().map(|p| p.0).max().unwrap_or(0).clamp(0, w);
    let y0 = bounds.iter().map(|p| p.1).min().unwrap_or(0).clamp(0, h);
    let y1 = bounds.iter().map(|p| p.1).max().unwrap_or(0).clamp(0, h);
    for y in y0..y1 {
        for x in x0..x1 {
            img.put_pixel(x as u32, y as u32, image::Luma([255]));
        }
    }
}

/// What one input file gave.
#[derive(Debug, Default)]
pub struct FileResult {
    /// Codes that parsed as caretaker's.
    pub codes: Vec<Parsed>,
    /// QR codes found but not readable as caretaker's codes, each with the reason.
    pub unreadable: Vec<String>,
}

/// Reads one scan (PNG or JPEG) or one sheet PDF written by caretaker.
pub fn read_file(path: &Path) -> Result<FileResult, ScanError> {
    let bytes = std::fs::read(path).map_err(|e| ScanError::Read { path: path.into(), reason: e.to_string() })?;
    let payloads: Vec<Result<String, String>> = if bytes.starts_with(b"%PDF-") {
        let Some(p) = pdf::embedded_payloads(&bytes) else {
            return Err(ScanError::ForeignPdf { path: path.into() });
        };
        p.into_iter().map(Ok).collect()
    } else {
        let img = image::load_from_memory(&bytes)
            .map_err(|e| ScanError::Read { path: path.into(), reason: e.to_string() })?;
        scan_image(&img).into_iter().map(|f| f.payload).collect()
    };
    let mut out = FileResult::default();
    for p in payloads {
        match p {
            Ok(text) => match chunk::parse(&text) {
                Ok(c) => out.codes.push(c),
                Err(e) => out.unreadable.push(e.to_string()),
            },
            Err(e) => out.unreadable.push(format!("a QR code could not be decoded ({e})")),
        }
    }
    Ok(out)
}

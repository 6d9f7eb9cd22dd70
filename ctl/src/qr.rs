//! A login link as a QR code drawn with Unicode half blocks, to scan with a phone's camera.

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;

/// The QR code of `text`, dark modules on a light background with the quiet zone scanners need,
/// two rows per text line. A text too long for any QR code gets a one-line note instead.
pub fn render(text: &str) -> String {
    match QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let mut drawing = code
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            drawing.push('\n');
            drawing
        }
        Err(e) => format!("(no QR code: {e})\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_square_of_half_blocks() {
        let drawing = render("https://kite.example.com/login?t=1795000000-0123456789abcdef");
        let lines: Vec<&str> = drawing.lines().collect();
        assert!(lines.len() > 10, "{drawing}");
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        // Two module rows per line: the drawing is about twice as wide as it is tall.
        assert!(width >= lines.len() * 2 - 2, "{width} x {}", lines.len());
        assert!(drawing
            .chars()
            .all(|c| matches!(c, '█' | '▀' | '▄' | ' ' | '\n')));
    }
}

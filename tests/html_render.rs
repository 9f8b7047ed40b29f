//! The HTML report is looked at in a browser: render it in headless Chromium (installed by .ci/run)
//! and check in the screenshot that the SVG timelines were drawn (lanes, close, FIN/RST markers and
//! shaded idle stretches all have their own colors).

mod common;

use std::process::Command;

use common::*;

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

#[test]
fn html_timelines_render_in_headless_chromium() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is needed for this test: apt-get install chromium (.ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let png_path = dir.path().join("shot.png");
    // voipInvite: a close frame, FIN and RST, and idle stretches between frames.
    let out = wsclose(&[
        "analyze",
        "--format",
        "html",
        corpus("pcap-http-analyzer/voipInvite.pcap")
            .to_str()
            .unwrap(),
    ]);
    assert!(out.status.success());
    std::fs::write(&html, &out.stdout).unwrap();
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,2400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        png_path.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let count = |hex: &str| {
        let want = rgb(hex);
        buf[..info.buffer_size()]
            .chunks(channels)
            .filter(|px| px[..3] == want)
            .count()
    };
    use wsclose::report::html::*;
    for (name, color, min) in [
        ("lanes", COLOR_LANE, 500),
        ("idle shading", COLOR_IDLE, 2000),
        // The legend holds a 12x12 square of each mark's color: demand clearly more than that.
        ("close marker", COLOR_CLOSE, 250),
        ("FIN marker", COLOR_FIN, 200),
        ("data marks", COLOR_DATA, 250),
    ] {
        let n = count(color);
        eprintln!("{name}: {n} pixels");
        assert!(
            n >= min,
            "{name} ({color}): only {n} pixels in the screenshot"
        );
    }
}

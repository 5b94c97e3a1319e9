//! `dealias report` writes one self-contained HTML file, and a real browser draws it: headless
//! Chromium loads it with no script error, console error or blocked request, and a screenshot
//! shows every figure drawn (enough non-background pixels and colours in each figure's box).
//!
//! Chromium comes from Debian's `chromium` package (`tools/setup_chromium.sh`, run by
//! `.ci/run`). Without it on PATH the browser part is skipped with a message, unless
//! `DEALIAS_REQUIRE_CHROMIUM` is set (as `.ci/run` does), which makes its absence a failure.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The value of attribute `name` in the first `<body ...>` tag of `dom`.
fn body_attr(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<body")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!("{name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(tag[i..i + tag[i..].find('"')?].to_string())
}

/// Runs chromium with `args` (after the fixed flags), killing it after a minute; returns its
/// standard output (through a file: a page's DOM is larger than a pipe's buffer).
fn chromium(profile: &Path, args: &[String]) -> String {
    let stdout_path = profile.join("stdout.txt");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdout(std::fs::File::create(&stdout_path).unwrap())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    String::from_utf8_lossy(&std::fs::read(&stdout_path).unwrap()).into_owned()
}

fn chromium_available() -> bool {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn report_is_self_contained_and_drawn_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("report.html");
    let (teacher, student) = (
        common::small_model_path("guitarml_lstm5x2_skip_bias"),
        common::small_model_path("guitarml_lstm4x1_noskip_nobias"),
    );
    let out = common::dealias_cmd(&[
        "report",
        &teacher,
        &student,
        "-o",
        html_path.to_str().unwrap(),
        "--level",
        "-6",
        "--device",
        "diode-clipper",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    // Nothing to load: no external sources, and a policy that would block them anyway.
    for bad in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "src=\"//",
        "@import",
    ] {
        assert!(!html.contains(bad), "the report refers to {bad}...");
    }
    assert!(html.contains("Content-Security-Policy") && html.contains("default-src 'none'"));
    // Spectra (teacher, student, reference), NMR-S x2, HESR-T, 4 spectrograms; players: the
    // sweep through 4, the guitar and the bass clip through teacher, student and device.
    assert_eq!(html.matches("<figure class=\"fig\"").count(), 10);
    assert_eq!(html.matches("<audio controls").count(), 10);
    assert!(html.contains("<td>student</td>"));
    // The full Table 1 row: G+B against the device and the -R columns.
    for want in [
        "<th>G+B ESR</th>",
        "<th>ESR-R</th>",
        "<th>HESR-R</th>",
        "against the diode-clipper device",
    ] {
        assert!(html.contains(want), "the report lacks {want}");
    }

    if !chromium_available() {
        if std::env::var_os("DEALIAS_REQUIRE_CHROMIUM").is_some() {
            panic!("chromium is not on PATH and DEALIAS_REQUIRE_CHROMIUM is set (run tools/setup_chromium.sh)");
        }
        eprintln!("SKIPPED the browser check: chromium is not on PATH (tools/setup_chromium.sh installs it)");
        return;
    }
    let url = format!("file://{}", html_path.display());
    let profile = tempfile::tempdir().unwrap();
    // The same width for both runs, so that the figures' boxes are where the screenshot has
    // them (the height does not change the layout).
    let width = 1300u32;
    let dom = chromium(
        profile.path(),
        &[
            format!("--window-size={width},2000"),
            "--virtual-time-budget=10000".into(),
            "--dump-dom".into(),
            url.clone(),
        ],
    );
    assert_eq!(
        body_attr(&dom, "data-loaded").as_deref(),
        Some("1"),
        "the page did not load"
    );
    assert_eq!(
        body_attr(&dom, "data-errors").as_deref(),
        Some(""),
        "errors in the page"
    );
    let rects: Vec<[u32; 4]> = body_attr(&dom, "data-figures")
        .unwrap()
        .split(';')
        .map(|r| {
            let v: Vec<u32> = r.split(',').map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    assert_eq!(rects.len(), 10);
    let height = rects.iter().map(|r| r[1] + r[3]).max().unwrap() + 40;
    let shot = dir.path().join("shot.png");
    let profile = tempfile::tempdir().unwrap();
    chromium(
        profile.path(),
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", shot.display()),
            url,
        ],
    );
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(info.width == width && info.height == height);
    for (i, r) in rects.iter().enumerate() {
        let mut drawn = 0usize;
        let mut colours = std::collections::HashSet::new();
        for y in r[1]..r[1] + r[3] {
            for x in r[0]..r[0] + r[2] {
                let o = (y as usize * info.width as usize + x as usize) * channels;
                let px = [buf[o], buf[o + 1], buf[o + 2]];
                if px != [255, 255, 255] {
                    drawn += 1;
                }
                colours.insert(px);
            }
        }
        let frac = drawn as f64 / (r[2] * r[3]) as f64;
        eprintln!(
            "figure {i}: {:.1}% drawn, {} colours",
            100.0 * frac,
            colours.len()
        );
        assert!(frac > 0.1, "figure {i} looks empty: {frac}");
        assert!(colours.len() > 8, "figure {i}: {} colours", colours.len());
    }
}

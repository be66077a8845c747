//! Bar charts as inline SVG, drawn on the server (no script, no library):
//! one stacked bar per time bucket, succeeded below failed.

use maud::{html, Markup};

/// `buckets`: (start ms, succeeded, failed), contiguous from `since` in
/// steps of `step_ms`, `count` of them (missing buckets are empty).
pub fn attempts(
    buckets: &[(i64, i64, i64)],
    since: i64,
    step_ms: i64,
    count: usize,
    label: &str,
) -> Markup {
    let (w, h, pad) = (1000.0_f64, 180.0_f64, 20.0_f64);
    let first = since / step_ms * step_ms;
    let mut series = vec![(0i64, 0i64); count];
    for (start, ok, failed) in buckets {
        let i = (start - first) / step_ms;
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| series.get_mut(i)) {
            *slot = (*ok, *failed);
        }
    }
    let max = series.iter().map(|(o, f)| o + f).max().unwrap_or(0).max(1) as f64;
    let bar = (w - 2.0 * pad) / count.max(1) as f64;
    let total: i64 = series.iter().map(|(o, f)| o + f).sum();
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
                @for (i, (ok, failed)) in series.iter().enumerate() {
                    @let x = pad + i as f64 * bar;
                    @let ok_h = (*ok as f64 / max) * (h - 2.0 * pad);
                    @let failed_h = (*failed as f64 / max) * (h - 2.0 * pad);
                    rect.ok x=(x) y=(h - pad - ok_h) width=(bar * 0.85) height=(ok_h) {}
                    rect.failed x=(x) y=(h - pad - ok_h - failed_h) width=(bar * 0.85) height=(failed_h) {}
                }
                line x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) class="axis" {}
                text x=(pad) y=(h - 4.0) class="tick" { "−" (label) }
                text x=(w - pad) y=(h - 4.0) class="tick end" { "now" }
                text x=(pad) y="14" class="tick" { "max " (max as i64) " per bucket" }
            }
            figcaption { (total) " attempts: " span.legend-ok { "■ succeeded" } " " span.legend-failed { "■ failed" } }
        }
    }
}

/// One series per bucket as bars (`class` colours them): `points` are
/// (bucket start ms, value), contiguous from `since` in steps of `step_ms`.
pub fn series(
    points: &[(i64, i64)],
    since: i64,
    step_ms: i64,
    count: usize,
    label: &str,
    class: &str,
) -> Markup {
    let (w, h, pad) = (600.0_f64, 120.0_f64, 20.0_f64);
    let first = since / step_ms * step_ms;
    let mut values: Vec<Option<i64>> = vec![None; count];
    for (start, v) in points {
        if let Some(slot) = usize::try_from((start - first) / step_ms)
            .ok()
            .and_then(|i| values.get_mut(i))
        {
            *slot = Some(*v);
        }
    }
    let max = values.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let bar = (w - 2.0 * pad) / count.max(1) as f64;
    let last = values.iter().rev().flatten().next().copied();
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
                @for (i, v) in values.iter().enumerate() {
                    @if let Some(v) = v {
                        @let bh = (*v as f64 / max) * (h - 2.0 * pad);
                        rect class=(class) x=(pad + i as f64 * bar) y=(h - pad - bh) width=(bar * 0.85) height=(bh) {}
                    }
                }
                line x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) class="axis" {}
                text x=(pad) y="14" class="tick" { "max " (max as i64) }
                text x=(w - pad) y=(h - 4.0) class="tick end" { "now" }
            }
            figcaption { (label) @if let Some(v) = last { " — latest sample " (v) } @else { " — no sample yet (workers sample once a minute)" } }
        }
    }
}

"""The live report: shell statistics, CC estimates, stopping hint, cost bound, page."""

import json
import os
import shutil
import subprocess

import gemmi
import numpy as np
import pytest
from matplotlib.image import imread

from careless_online.io import writers
from careless_online.io.reflections import ReflectionIndex
from careless_online.report.live import LiveReport, RoundProgress
from careless_online.report.halves import HalfMerge, merge_halves
from careless_online.report.shells import ShellLayout, shell_statistics
from careless_online.report.trend import Trend, crossing_resolution, gain_per_1000, stopping_hint

CHROMIUM = "/usr/bin/chromium"


def _index(anomalous=True):
    return ReflectionIndex.from_cell(gemmi.UnitCell(40, 40, 60, 90, 90, 90), gemmi.SpaceGroup("P 43 21 2"),
                                     3.0, anomalous)


def _posterior(index, rng, noise=0.5):
    """Counts and a posterior whose means scatter around a Wilson-like truth."""
    counts = rng.poisson(3.0, len(index))
    f_mean = rng.gamma(4.0, 2.0, len(index)) + rng.normal(0, noise, len(index))
    return counts, f_mean, np.full(len(index), noise)


def test_half_merges_undo_the_predicted_scale_of_each_observation():
    rng = np.random.default_rng(1)
    n, n_obs = 500, 20000
    f_true = rng.gamma(4.0, 2.0, n)
    refl = rng.integers(0, n, n_obs)
    image = rng.integers(0, 400, n_obs)
    scale = rng.lognormal(0.0, 0.7, 400)[image]  # per-image scales the model predicts
    predicted = scale * f_true[refl] ** 2
    sigma = 0.05 * predicted
    observed = predicted + rng.normal(0, 1, n_obs) * sigma
    halves = merge_halves([{"refl_id": refl, "image_id": image, "I": observed, "SigI": sigma,
                            "Ipred": predicted}], f_true, np.zeros(n))
    both = np.isfinite(halves).all(axis=0)
    np.testing.assert_allclose(halves[:, both], np.tile(f_true[both] ** 2, (2, 1)), rtol=0.1)
    unscaled = HalfMerge(f_true, np.zeros(n))
    unscaled.add(refl, image, observed, sigma, np.ones(n_obs) * f_true[refl] ** 2)  # scales left in
    assert np.corrcoef(*halves[:, both])[0, 1] > 0.99 > np.corrcoef(*unscaled.means()[:, both])[0, 1]
    assert np.array_equal(np.isfinite(halves[0]), np.isin(np.arange(n), refl[image % 2 == 0]))


def test_shell_layout_has_equal_count_shells_and_friedel_partners():
    index = _index()
    layout = ShellLayout.from_index(index, n_shells=8)
    sizes = np.bincount(layout.shell[layout.unique], minlength=8)
    assert sizes.max() - sizes.min() <= 1
    assert np.all(np.diff(layout.d_min) < 0) and np.all(layout.d_max > layout.d_min)
    has = layout.partner >= 0
    assert np.array_equal(index.hkl[layout.unique[has]], index.hkl[layout.partner[has]])
    assert not index.plus[layout.partner[has]].any()
    assert np.array_equal(~has, index.centric[layout.unique])
    assert np.array_equal(layout.shell[layout.partner[has]], layout.shell[layout.unique[has]])


def test_shell_statistics_count_completeness_and_multiplicity():
    index = _index(anomalous=False)
    layout = ShellLayout.from_index(index, n_shells=4)
    counts = np.zeros(len(index), dtype=int)
    counts[::2] = 3
    rng = np.random.default_rng(2)
    truth = rng.gamma(4.0, 2.0, len(index))
    halves = truth + rng.normal(0, 0.1, (2, len(index)))
    halves[:, counts == 0] = np.nan
    shells, overall = shell_statistics(layout, counts, halves)
    assert overall["completeness"] == pytest.approx(np.mean(counts > 0))
    assert overall["multiplicity"] == pytest.approx(3.0)
    assert sum(s["n_measured"] for s in shells) == overall["n_measured"] == (counts > 0).sum()
    assert all(np.isnan(s["ccanom"]) for s in shells)  # no Friedel mates kept apart
    assert all(s["cchalf"] > 0.9 for s in shells)  # precise halves, large spread
    assert np.isnan(shell_statistics(layout, counts)[1]["cchalf"])  # no halves, no CC


def test_ccanom_correlates_the_anomalous_differences_of_the_halves():
    index = _index()
    layout = ShellLayout.from_index(index, n_shells=2)
    rng = np.random.default_rng(3)
    counts = np.ones(len(index), dtype=int)
    minus = layout.partner[layout.partner >= 0]
    truth = np.full(len(index), 100.0)
    truth[minus] += rng.normal(0, 1.0, len(minus))  # anomalous differences of spread 1
    for noise, expected in ((0.01, 1.0), (1.0, 1.0 / 3.0)):  # var D / (var D + 2 noise^2) per half
        halves = truth + rng.normal(0, noise, (2, len(index)))
        _, overall = shell_statistics(layout, counts, halves)
        assert overall["ccanom"] == pytest.approx(expected, abs=0.1)


def test_gain_is_the_slope_over_the_recent_half_of_the_data():
    images = np.arange(1, 11) * 1000.0
    assert gain_per_1000(images, 0.1 + 0.02 * images / 1000) == pytest.approx(0.02)
    early_rise_then_flat = np.where(images < 5000, images / 10000, 0.5)
    assert gain_per_1000(images, early_rise_then_flat) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(gain_per_1000(images[:2], [0.1, 0.2]))
    assert np.isnan(gain_per_1000([5, 5, 5], [0.1, 0.2, 0.3]))


def _shells(values, edges):
    return [{"d_max": a, "d_min": b, "cchalf": v} for v, a, b in zip(values, edges[:-1], edges[1:])]


def test_crossing_resolution_interpolates_in_inverse_d_squared():
    edges = [10.0, 4.0, 3.0, 2.5]
    centres = [0.5 * (a ** -2 + b ** -2) for a, b in zip(edges[:-1], edges[1:])]
    crossing = crossing_resolution(_shells([0.9, 0.5, 0.1], edges))
    expected = (centres[1] + 0.5 * (centres[2] - centres[1])) ** -0.5
    assert crossing == pytest.approx(expected)
    assert crossing_resolution(_shells([0.9, 0.8, 0.7], edges)) == 2.5
    assert crossing_resolution(_shells([0.2, 0.1, 0.0], edges)) is None


def _trend(outer_values):
    trend = Trend()
    for number, value in enumerate(outer_values):
        trend.add(1000 * (number + 1), [{"cchalf": 0.9, "ccanom": 0.1}, {"cchalf": value, "ccanom": 0.0}])
    return trend


def test_stopping_hint_tells_a_flat_outer_shell_from_a_rising_one():
    edges = [10.0, 3.0, 2.0]
    flat = stopping_hint(_trend([0.1, 0.3, 0.4, 0.4, 0.4, 0.4]), _shells([0.9, 0.4], edges))
    assert flat["outer_stopped"] is True and "has stopped improving" in flat["text"]
    assert "crosses 0.3" not in flat["text"] and "stays above 0.3" in flat["text"]
    rising = stopping_hint(_trend([0.1, 0.15, 0.2, 0.25]), _shells([0.9, 0.25], edges))
    assert rising["outer_stopped"] is False and rising["outer_gain_per_1000"] == pytest.approx(0.05)
    assert "still improving" in rising["text"] and "crosses 0.3 at" in rising["text"]
    assert stopping_hint(_trend([0.1]), _shells([0.9, 0.1], edges))["outer_stopped"] is None


def _progress(images, elapsed):
    return RoundProgress(images=images, images_waiting=3, images_per_second=images / elapsed, lag_seconds=1.5,
                         steps=10 * images, elapsed_seconds=elapsed, round_seconds=2.0)


def _update(report, index, images, elapsed, seed=0):
    rng = np.random.default_rng(seed)
    counts, f_mean, f_std = _posterior(index, rng)
    merged = writers.merged_table(index, f_mean, f_std, counts)
    refl = np.repeat(np.arange(len(index)), counts)
    intensity = f_mean[refl] ** 2 * (1 + 0.1 * rng.normal(size=len(refl)))

    def observations():
        yield {"refl_id": refl, "image_id": np.arange(len(refl)), "I": intensity,
               "SigI": np.full(len(refl), 5.0), "Ipred": f_mean[refl] ** 2}
    return report.update(_progress(images, elapsed), f_mean, f_std, counts, merged, observations=observations)


def test_report_files_are_strict_json_written_atomically(tmp_path):
    index = _index()
    report = LiveReport(str(tmp_path / "live"), index, n_shells=5)
    status = _update(report, index, 100, 10.0)
    on_disk = json.loads((tmp_path / "live" / "status.json").read_text())  # strict: NaN would not parse back
    for key in ("images", "images_waiting", "images_per_second", "lag_seconds", "steps", "elapsed_seconds"):
        assert on_disk[key] == status[key]
    assert [set(s) >= {"d_min", "d_max", "completeness", "multiplicity", "cchalf", "ccanom"}
            for s in on_disk["shells"]] == [True] * 5
    assert not [name for name in os.listdir(tmp_path / "live") if name.endswith(".tmp")]
    page = (tmp_path / "live" / "index.html").read_text()
    assert '<meta http-equiv="refresh" content="10">' in page and "Stopping hint" in page
    assert f"<div class='v'>{status['images_converted']}</div><div class='k'>images converted</div>" in page


def test_status_counts_images_converted_between_rounds(tmp_path):
    index = _index()
    report = LiveReport(str(tmp_path / "live"), index, n_shells=5)
    report.arrived(50, 1.0)  # before the first look: nothing to say yet
    assert not (tmp_path / "live" / "status.json").exists()
    counts = np.random.default_rng(0).poisson(0.5, len(index))
    report.first_look(60, 2.0, counts, {"files": 1, "stream_chunks": 0})  # converted, not trained on yet
    early = json.loads((tmp_path / "live" / "status.json").read_text())
    assert (early["images"], early["images_waiting"], early["steps"], early["backlog"]["files"]) == (0, 60, 0, 1)
    expected = shell_statistics(report.layout, counts)[1]
    assert 0 < early["overall"]["completeness"] == pytest.approx(expected["completeness"])
    assert early["overall"]["multiplicity"] == pytest.approx(expected["multiplicity"])
    assert early["overall"]["cchalf"] is None and report.drawings == 0  # strict JSON: NaN written as null
    _update(report, index, 100, 10.0)
    first = json.loads((tmp_path / "live" / "status.json").read_text())
    assert first["images_converted"] == 103 and first["images_waiting"] == 3
    assert first["backlog"] == {}
    report.arrived(160, 12.5, {"files": 4, "stream_chunks": 0})  # new files converted while the merge waits
    status = json.loads((tmp_path / "live" / "status.json").read_text())
    assert (status["images"], status["images_waiting"], status["images_converted"]) == (100, 60, 160)
    assert status["backlog"] == {"files": 4, "stream_chunks": 0}
    assert status["elapsed_seconds"] == 12.5 and status["shells"] == first["shells"]
    assert report.drawings == 1


def test_overall_statistics_are_followed_against_images_merged(tmp_path):
    index = _index()
    report = LiveReport(str(tmp_path / "live"), index, n_shells=5, max_fraction=1.0)
    overall = [_update(report, index, 100 * (n + 1), 10.0 * (n + 1), seed=n)["overall"] for n in range(3)]
    images, multiplicity = report.trend.overall_series("multiplicity")
    assert list(images) == [100, 200, 300]
    assert list(multiplicity) == [o["multiplicity"] for o in overall]
    status = json.loads((tmp_path / "live" / "status.json").read_text())
    assert [p["overall"]["cchalf"] for p in status["trend"]] == pytest.approx([o["cchalf"] for o in overall])
    assert status["figures"][0] == "overall.png" and (tmp_path / "live" / "overall.png").stat().st_size > 0


def test_report_draws_only_within_its_cost_bound(tmp_path):
    index = _index()
    report = LiveReport(str(tmp_path / "live"), index, n_shells=5, max_fraction=0.1)
    _update(report, index, 100, 10.0)
    first_page = (tmp_path / "live" / "index.html").read_text()
    status = _update(report, index, 200, 10.5, seed=1)  # at once: drawing again would cost far over 10 %
    assert report.drawings == 1 and status["images"] == 200
    assert (tmp_path / "live" / "index.html").read_text() == first_page
    report.mark_phase("finishing")
    report.finish()  # the end of the merge is always drawn
    assert report.drawings == 2 and "200 images" in (tmp_path / "live" / "index.html").read_text()
    assert len(report.trend.points) == 2
    status = json.loads((tmp_path / "live" / "status.json").read_text())
    assert status["finished"] is True and status["phase"] == "finishing"  # the redraw keeps the latest phase


def _page_share(page):
    """The report share the page shows (its summary box), as a fraction."""
    box = page.split("report share of run time")[0].rsplit("<div class='v'>", 1)[1]
    return float(box.split("%")[0]) / 100


def test_a_finished_merge_stops_the_page_reloading_and_the_report_share_is_one_figure(tmp_path):
    index = _index()
    report = LiveReport(str(tmp_path / "live"), index, n_shells=5, max_fraction=1.0)
    status = _update(report, index, 100, 0.5)
    page = (tmp_path / "live" / "index.html").read_text()
    assert 'http-equiv="refresh"' in page and "Finished" not in page and not status.get("finished")
    written = json.loads((tmp_path / "live" / "status.json").read_text())
    assert _page_share(page) == pytest.approx(written["report_fraction"], abs=0.0005)  # the same figure
    assert written["report_fraction"] == status["report_fraction"] > 0
    final = report.finish()
    page = (tmp_path / "live" / "index.html").read_text()
    assert "http-equiv" not in page and "<b>Finished</b> after step" in page and "finished:" in page
    written = json.loads((tmp_path / "live" / "status.json").read_text())
    assert written["finished"] is True and final["finished"] is True
    assert _page_share(page) == pytest.approx(written["report_fraction"], abs=0.0005)


def test_index_html_renders_in_headless_chromium(tmp_path):
    if not os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no browser at {CHROMIUM} (Debian: apt-get install chromium); .ci/run installs one")
    index = _index()
    report = LiveReport(str(tmp_path / "live"), index, n_shells=6, max_fraction=1.0)
    for number in range(3):
        _update(report, index, 100 * (number + 1), 10.0 * (number + 1), seed=number)
    shot = tmp_path / "page.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
               f"file://{tmp_path / 'live' / 'index.html'}"]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = imread(str(shot))
    assert pixels.shape[:2] == (2000, 1200)
    coloured = np.ptp(pixels[..., :3], axis=-1) > 0.2  # saturated pixels: the plotted lines and bars
    assert coloured.mean() > 0.01, "the figures did not render"
